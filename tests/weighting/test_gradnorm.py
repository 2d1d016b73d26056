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
    """L_a = 3 (xW)_0, L_b = (xW)_1 with x = [1, 2]: ||grad_W L|| = 3 sqrt5, sqrt5."""
    x = tf.constant([[1.0, 2.0]])
    with tf.GradientTape(persistent=True) as tape:
        h = tf.matmul(x, shared)[0] + bias
        losses = tf.stack([3.0 * h[0], h[1]])
    variables = [shared, bias, strategy.task_weights]
    ctx = StepContext(
        tape=tape, task_losses=losses, regularization_loss=None, variables=variables,
        shared=[0, 1], task_specific=[[], []], own=[2], scale_loss=lambda v: v,
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
        tape=None, task_losses=None, regularization_loss=None, variables=v,
        shared=[0, 1, 2, 3], task_specific=[[4]], own=[], scale_loss=lambda x: x,
    )
    assert GradNorm.select_shared(ctx) == [2]
