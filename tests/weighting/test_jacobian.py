"""`task_jacobian`: every way of computing it gives the same matrix."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from mtl_keras.weighting.jacobian import representation_jacobian, task_jacobian

T = 3


def _setup():
    """A trunk (z = representation), a shared side layer beside z, T towers."""
    keras.utils.set_random_seed(0)
    trunk = keras.layers.Dense(6, activation="tanh")
    side = keras.layers.Dense(2)  # shared, but z does not depend on it
    towers = [keras.layers.Dense(1) for _ in range(T)]
    x = tf.constant(np.random.default_rng(0).normal(size=(5, 4)), tf.float32)
    y = tf.constant(np.random.default_rng(1).normal(size=(5, T)), tf.float32)
    trunk.build((None, 4))
    side.build((None, 4))
    for tower in towers:
        tower.build((None, 8))
    shared = trunk.trainable_variables + side.trainable_variables

    def run(tape, as_list=False):
        z = trunk(x)
        s = side(x)
        feats = tf.concat([z, s], axis=1)
        preds = [tower(feats)[:, 0] for tower in towers]
        losses = [tf.reduce_mean((p - y[:, t]) ** 2) for t, p in enumerate(preds)]
        return z, (losses if as_list else tf.stack(losses))

    return shared, run


def _jacobian(method: str, through: bool, jit: bool, as_list: bool = False) -> np.ndarray:
    shared, run = _setup()

    def compute():
        with tf.GradientTape(persistent=True) as tape:
            z, losses = run(tape, as_list)
        return task_jacobian(
            tape, losses, shared, method=method, representation=z if through else None
        )

    fn = tf.function(compute, jit_compile=jit)
    return fn().numpy()


def _expected() -> np.ndarray:
    shared, run = _setup()
    rows = []
    for t in range(T):
        with tf.GradientTape() as tape:
            _, losses = run(tape)
            loss = losses[t]
        grads = tape.gradient(loss, shared)
        rows.append(np.concatenate([g.numpy().ravel() for g in grads]))
    return np.stack(rows)


@pytest.mark.parametrize("as_list", [False, True], ids=["stacked", "list"])
@pytest.mark.parametrize("jit", [False, True], ids=["graph", "xla"])
@pytest.mark.parametrize("through", [False, True], ids=["direct", "chain"])
@pytest.mark.parametrize("method", ["pfor", "loop"])
def test_all_methods_agree(method: str, through: bool, jit: bool, as_list: bool) -> None:
    expected = _expected()
    assert expected.shape == (T, 4 * 6 + 6 + 4 * 2 + 2)
    np.testing.assert_allclose(
        _jacobian(method, through, jit, as_list), expected, rtol=1e-5, atol=1e-6
    )


def _matmuls_of_representation_jacobian(num_tasks: int, as_list: bool) -> int:
    x = tf.ones([4, 3])
    trunk = tf.Variable(tf.ones([3, 5]))
    heads = [tf.Variable(tf.ones([5, 1])) for _ in range(num_tasks)]

    @tf.function
    def compute():
        with tf.GradientTape(persistent=True) as tape:
            z = tf.matmul(x, trunk)
            losses = [tf.reduce_mean(tf.matmul(z, h)) for h in heads]
            losses = losses if as_list else tf.stack(losses)
        return representation_jacobian(tape, losses, z)

    graph = compute.get_concrete_function().graph
    return sum(op.type == "MatMul" for op in graph.get_operations())


def test_per_task_losses_reach_their_own_head_only() -> None:
    # From the losses before stacking, task t's backward pass meets head t
    # alone: each task adds the same number of matmuls (its head's forward
    # and backward). From slices of the stacked vector every pass runs
    # through all T heads with zero cotangents, so the count grows as T^2.
    listed = [_matmuls_of_representation_jacobian(t, as_list=True) for t in (1, 2, 3)]
    stacked = [_matmuls_of_representation_jacobian(t, as_list=False) for t in (1, 2, 3)]
    assert listed[2] - listed[1] == listed[1] - listed[0]
    assert stacked[2] - stacked[1] > stacked[1] - stacked[0]
    assert listed[2] < stacked[2]
