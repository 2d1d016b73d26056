"""GradNorm on a tiny fixed problem, checked against a hand computation."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

import mtl_keras as mk
from mtl_keras.weighting import GradNorm
from mtl_keras.weighting.base import StepContext

SQ5 = np.sqrt(5.0)


def _step(strategy: GradNorm, shared: keras.Variable, bias: keras.Variable):
    """L_a = 3 (xW)_0, L_b = (xW)_1 with x = [1, 2]: ||grad_W L|| = 3 sqrt5, sqrt5;
    on the representation h = xW + b: ||grad_h L|| = 3, 1."""
    x = tf.constant([[1.0, 2.0]])
    with tf.GradientTape(persistent=True) as tape:
        h = tf.matmul(x, shared)[0] + bias
        losses = tf.stack([3.0 * h[0], h[1]])
    variables = [shared, bias, strategy.task_weights]
    ctx = StepContext(
        tape=tape,
        task_losses=losses,
        regularization_loss=None,
        variables=variables,
        shared=[0, 1],
        task_specific=[[], []],
        own=[2],
        scale_loss=lambda v: v,
        representation=h,
    )
    return strategy.compute_gradients(ctx)


def _setup(alpha: float = 1.5):
    strategy = GradNorm(alpha=alpha)
    strategy.build_for_tasks([mk.Binary("a"), mk.Regression("b")])
    shared = keras.Variable(np.ones((2, 2), "float32"))
    bias = keras.Variable(np.zeros(2, "float32"))  # rank 1: not the probe
    return strategy, shared, bias


def test_first_step_weight_gradient_and_network_gradient() -> None:
    strategy, shared, bias = _setup()
    grads, w = _step(strategy, shared, bias)
    np.testing.assert_allclose(w, [1.0, 1.0])
    np.testing.assert_allclose(strategy.initial_losses, [9.0, 3.0])
    # r = 1: G = [3 sqrt5, sqrt5], target = G_bar = 2 sqrt5 -> sign [+, -].
    np.testing.assert_allclose(grads[2], [3 * SQ5, -SQ5], rtol=1e-6)
    np.testing.assert_allclose(grads[0], [[3.0, 1.0], [6.0, 2.0]], rtol=1e-6)


def test_sgd_update_then_renormalisation_matches_hand() -> None:
    strategy, shared, bias = _setup(alpha=1.5)
    strategy.initial_losses.assign([18.0, 3.0])  # task a trained twice as fast
    strategy.task_weights.assign([3.0, 1.0])  # renormalised to [1.5, 0.5]
    grads, w = _step(strategy, shared, bias)
    np.testing.assert_allclose(w, [1.5, 0.5], rtol=1e-6)
    np.testing.assert_allclose(strategy.task_weights, [1.5, 0.5], rtol=1e-6)
    ratio = np.array([9 / 18, 3 / 3])
    rel = ratio / ratio.mean()
    norms = np.array([3 * SQ5, SQ5])
    g = np.array([1.5, 0.5]) * norms
    target = g.mean() * rel**1.5
    expected = np.sign(g - target) * norms
    np.testing.assert_allclose(grads[2], expected, rtol=1e-6)
    np.testing.assert_allclose(grads[0], [[4.5, 0.5], [9.0, 1.0]], rtol=1e-6)
    # One SGD step on the weights, then the next step renormalises to sum 2.
    keras.optimizers.SGD(0.1).apply([grads[2]], [strategy.task_weights])
    raw = np.array([1.5, 0.5]) - 0.1 * expected
    _, w = _step(strategy, shared, bias)
    np.testing.assert_allclose(w, 2 * raw / raw.sum(), rtol=1e-6)


def test_select_shared_prefers_last_kernel() -> None:
    v = [keras.Variable(np.ones(s, "float32")) for s in ((2, 3), (3,), (3, 4), (4,), (4, 1))]
    ctx = StepContext(
        tape=None,
        task_losses=None,
        regularization_loss=None,
        variables=v,
        shared=[0, 1, 2, 3],
        task_specific=[[4]],
        own=[],
        scale_loss=lambda x: x,
    )
    assert GradNorm.select_shared(ctx) == [2]


def test_representation_norms_match_hand() -> None:
    strategy = GradNorm(alpha=1.5, rep_grad=True)
    strategy.build_for_tasks([mk.Binary("a"), mk.Regression("b")])
    shared = keras.Variable(np.ones((2, 2), "float32"))
    bias = keras.Variable(np.zeros(2, "float32"))
    grads, _ = _step(strategy, shared, bias)
    # r = 1: G = [3, 1], target = G_bar = 2 -> sign [+, -] times the norms.
    np.testing.assert_allclose(grads[2], [3.0, -1.0], rtol=1e-6)
    np.testing.assert_allclose(grads[0], [[3.0, 1.0], [6.0, 2.0]], rtol=1e-6)
    assert GradNorm.from_config(strategy.get_config()).rep_grad


def test_representation_mode_trains_under_xla() -> None:
    from _support import toy_data, toy_model

    x, y = toy_data(128)
    model = toy_model(weighting=GradNorm(rep_grad=True), jit_compile=True)
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    weights = [history.history[f"{t}_weight"][-1] for t in ("click", "dwell")]
    assert np.all(np.isfinite(history.history["loss"]))
    np.testing.assert_allclose(sum(weights), 2.0, rtol=1e-4)
    assert weights[0] != weights[1]  # the weights moved


def test_representation_mode_needs_a_representation() -> None:
    import pytest

    strategy = GradNorm(rep_grad=True)
    strategy.build_for_tasks([mk.Binary("a"), mk.Regression("b")])
    shared = keras.Variable(np.ones((2, 2), "float32"))
    x = tf.constant([[1.0, 2.0]])
    with tf.GradientTape(persistent=True) as tape:
        h = tf.matmul(x, shared)[0]
        losses = tf.stack([h[0], h[1]])
    ctx = StepContext(
        tape=tape,
        task_losses=losses,
        regularization_loss=None,
        variables=[shared, strategy.task_weights],
        shared=[0],
        task_specific=[[], []],
        own=[1],
        scale_loss=lambda v: v,
    )
    with pytest.raises(ValueError, match="representation"):
        strategy.compute_gradients(ctx)
