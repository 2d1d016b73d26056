"""Uncertainty (Kendall et al. 2018): formulas and gradient w.r.t. log-variances."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

import mtl_keras as mk
from mtl_keras.weighting import Uncertainty


def test_classification_vs_regression_and_log_var_gradient() -> None:
    strategy = Uncertainty()
    strategy.build_for_tasks([mk.Binary("a"), mk.Regression("b")])
    s = np.array([0.4, -0.3])
    strategy.log_vars.assign(s)
    l_cls, l_reg = 0.7, 2.5
    with tf.GradientTape() as tape:
        total, w = strategy.combine(tf.constant([l_cls, l_reg]), training=True)
    grad = tape.gradient(total, strategy.log_vars)
    # Classification: exp(-s) L + s/2; regression: exp(-s) L / 2 + s/2.
    expected_total = np.exp(-s[0]) * l_cls + 0.5 * s[0] + 0.5 * np.exp(-s[1]) * l_reg + 0.5 * s[1]
    np.testing.assert_allclose(total, expected_total, rtol=1e-6)
    np.testing.assert_allclose(w, [np.exp(-s[0]), 0.5 * np.exp(-s[1])], rtol=1e-6)
    np.testing.assert_allclose(
        grad, [-np.exp(-s[0]) * l_cls + 0.5, -0.5 * np.exp(-s[1]) * l_reg + 0.5], rtol=1e-6
    )


def test_optimum_log_variance() -> None:
    # d/ds = 0 at s = log(2 L) (classification) and s = log(L) (regression).
    strategy = Uncertainty()
    strategy.build_for_tasks([mk.Binary("a"), mk.Regression("b")])
    losses = np.array([0.7, 2.5])
    strategy.log_vars.assign([np.log(2 * 0.7), np.log(2.5)])
    with tf.GradientTape() as tape:
        total, _ = strategy.combine(tf.constant(losses, tf.float32), training=True)
    np.testing.assert_allclose(tape.gradient(total, strategy.log_vars), 0.0, atol=1e-6)
