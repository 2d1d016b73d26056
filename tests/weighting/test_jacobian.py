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

    def run(tape):
        z = trunk(x)
        s = side(x)
        feats = tf.concat([z, s], axis=1)
        preds = [tower(feats)[:, 0] for tower in towers]
        losses = tf.stack([tf.reduce_mean((p - y[:, t]) ** 2) for t, p in enumerate(preds)])
        return z, losses

    return shared, run


def _jacobian(method: str, through: bool, jit: bool) -> np.ndarray:
    shared, run = _setup()

    def compute():
        with tf.GradientTape(persistent=True) as tape:
            z, losses = run(tape)
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


@pytest.mark.parametrize("jit", [False, True], ids=["graph", "xla"])
@pytest.mark.parametrize("through", [False, True], ids=["direct", "chain"])
@pytest.mark.parametrize("method", ["pfor", "loop"])
def test_all_methods_agree(method: str, through: bool, jit: bool) -> None:
    expected = _expected()
    assert expected.shape == (T, 4 * 6 + 6 + 4 * 2 + 2)
    np.testing.assert_allclose(_jacobian(method, through, jit), expected, rtol=1e-5, atol=1e-6)


def test_representation_jacobian_rows_are_task_gradients() -> None:
    _, run = _setup()
    with tf.GradientTape(persistent=True) as tape:
        z, losses = run(tape)
    jz = representation_jacobian(tape, losses, z)
    assert jz.shape == (T, 5, 6)
    for t in range(T):
        with tf.GradientTape() as tape2:
            z2, losses2 = run(tape2)
            loss = losses2[t]
        np.testing.assert_allclose(jz[t].numpy(), tape2.gradient(loss, z2).numpy(), rtol=1e-5)


def test_unknown_method_is_rejected() -> None:
    shared, run = _setup()
    with tf.GradientTape(persistent=True) as tape:
        _, losses = run(tape)
    with pytest.raises(ValueError, match="Unknown Jacobian method"):
        task_jacobian(tape, losses, shared, method="forward")


@pytest.mark.parametrize("jit", [False, True], ids=["graph", "xla"])
def test_chain_vectorises_without_fallback(jit: bool) -> None:
    from mtl_keras.weighting.jacobian import _chain_jacobian

    shared, run = _setup()

    def compute():
        with tf.GradientTape(persistent=True) as tape:
            z, losses = run(tape)
        return _chain_jacobian(tape, losses, shared, z, "pfor")  # raises if pfor fails

    np.testing.assert_allclose(
        tf.function(compute, jit_compile=jit)().numpy(), _expected(), rtol=1e-5, atol=1e-6
    )
