"""IMTL-L: objective and gradient w.r.t. the log-scales."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

import mtl_keras as mk
from mtl_keras.weighting import IMTLL


def test_gradient_wrt_log_scales_is_analytic() -> None:
    strategy = IMTLL()
    strategy.build_for_tasks([mk.Binary("a"), mk.Regression("b", weight=2.0)])
    s = np.array([0.3, -0.2])
    strategy.log_scales.assign(s)
    losses = np.array([0.7, 2.5])
    with tf.GradientTape() as tape:
        total, w = strategy.combine(tf.constant(losses, tf.float32), training=True)
    grad = tape.gradient(total, strategy.log_scales)
    priors = np.array([1.0, 2.0])
    np.testing.assert_allclose(w, np.exp(s) * priors, rtol=1e-6)
    np.testing.assert_allclose(total, np.sum(np.exp(s) * priors * losses - s), rtol=1e-6)
    np.testing.assert_allclose(grad, np.exp(s) * priors * losses - 1.0, rtol=1e-5)


def test_stationary_point_balances_scaled_losses() -> None:
    strategy = IMTLL()
    strategy.build_for_tasks([mk.Binary("a"), mk.Regression("b")])
    losses = np.array([0.5, 4.0])
    strategy.log_scales.assign(-np.log(losses))
    with tf.GradientTape() as tape:
        total, _ = strategy.combine(tf.constant(losses, tf.float32), training=True)
    np.testing.assert_allclose(tape.gradient(total, strategy.log_scales), 0.0, atol=1e-6)
