"""FAMO: objective weights and the logit update from consecutive losses."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

import mtl_keras as mk
from mtl_keras.weighting import FAMO

TASKS = [mk.Binary("a"), mk.Regression("b"), mk.Regression("c")]


def _built(**kwargs) -> FAMO:
    strategy = FAMO(**kwargs)
    strategy.build_for_tasks(TASKS)
    return strategy


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def _logit_grad(xi: np.ndarray, prev: np.ndarray, cur: np.ndarray, wd: float) -> np.ndarray:
    z = _softmax(xi)
    delta = np.log(prev) - np.log(cur)
    jac = np.diag(z) - np.outer(z, z)  # d softmax / d xi (symmetric)
    return jac @ delta + wd * xi


def test_sgd_logit_update_matches_hand_step() -> None:
    famo = _built(update="sgd", learning_rate=0.1, weight_decay=0.01)
    l1, l2, l3 = np.array([1.0, 2.0, 4.0]), np.array([0.5, 1.9, 4.4]), np.array([0.4, 1.0, 4.0])
    famo.combine(tf.constant(l1, tf.float32), training=True)
    np.testing.assert_allclose(famo.logits, 0.0)  # nothing to compare with yet
    famo.combine(tf.constant(l2, tf.float32), training=True)
    xi = -0.1 * _logit_grad(np.zeros(3), l1, l2, 0.01)
    np.testing.assert_allclose(famo.logits, xi, rtol=1e-5, atol=1e-7)
    famo.combine(tf.constant(l3, tf.float32), training=True)
    xi = xi - 0.1 * _logit_grad(xi, l2, l3, 0.01)
    np.testing.assert_allclose(famo.logits, xi, rtol=1e-5, atol=1e-7)
    # The task whose loss fell least (c) gained weight.
    assert np.argmax(np.asarray(famo.logits)) == 2


def test_adam_logit_update_matches_hand_step() -> None:
    famo = _built()  # paper defaults: Adam, lr 0.025, weight decay 1e-3
    l1, l2, l3 = np.array([1.0, 2.0, 4.0]), np.array([0.5, 1.9, 4.4]), np.array([0.4, 1.0, 4.0])
    for losses in (l1, l2, l3):
        famo.combine(tf.constant(losses, tf.float32), training=True)
    b1, b2, lr, eps = 0.9, 0.999, 0.025, 1e-8
    xi, m, v = np.zeros(3), np.zeros(3), np.zeros(3)
    for t, (prev, cur) in enumerate(((l1, l2), (l2, l3)), start=1):
        g = _logit_grad(xi, prev, cur, 1e-3)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        xi = xi - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    np.testing.assert_allclose(famo.logits, xi, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(famo.logit_steps, 2.0)


def test_objective_gradient_is_normalised_z_over_loss() -> None:
    famo = _built()
    famo.logits.assign([0.2, -0.1, 0.3])
    losses = tf.Variable([0.5, 2.0, 0.0])  # task c unlabelled in this batch
    with tf.GradientTape() as tape:
        total, w = famo.combine(losses, training=False)
    grad = tape.gradient(total, losses)
    z = _softmax(np.array([0.2, -0.1, 0.3]))[:2]
    expected = z / np.array([0.5, 2.0])
    expected = np.append(expected / expected.sum(), 0.0)
    np.testing.assert_allclose(w, expected, rtol=1e-5)
    np.testing.assert_allclose(grad, expected, rtol=1e-5)
    np.testing.assert_allclose(famo.logit_steps, 0.0)  # evaluation: no update
