"""GeometricMean: objective value and per-task gradient factors."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

import mtl_keras as mk
from mtl_keras.weighting import GeometricMean

TASKS = [mk.Binary("a"), mk.Regression("b"), mk.Regression("c")]


def test_objective_and_weights() -> None:
    strategy = GeometricMean()
    strategy.build_for_tasks(TASKS)
    losses = tf.Variable([0.5, 2.0, 4.0])
    with tf.GradientTape() as tape:
        total, w = strategy.combine(losses, training=True)
    expected = (0.5 * 2.0 * 4.0) ** (1 / 3)
    np.testing.assert_allclose(total, expected, rtol=1e-6)
    np.testing.assert_allclose(w, expected / (3 * np.array([0.5, 2.0, 4.0])), rtol=1e-6)
    np.testing.assert_allclose(tape.gradient(total, losses), w, rtol=1e-5)


def test_unlabelled_task_is_left_out() -> None:
    strategy = GeometricMean()
    strategy.build_for_tasks(TASKS)
    total, w = strategy.combine(tf.constant([0.5, 0.0, 2.0]), training=False)
    np.testing.assert_allclose(total, 1.0, rtol=1e-6)  # sqrt(0.5 * 2)
    np.testing.assert_allclose(w, [1.0, 0.0, 0.25], rtol=1e-6)
