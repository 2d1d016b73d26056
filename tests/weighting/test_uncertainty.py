"""Uncertainty (Kendall et al. 2018): formulas and gradient w.r.t. log-variances."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from _support.toy import runaway_uncertainty_model

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


def test_runaway_log_variances_are_bounded_and_the_logged_loss_tracks_the_tasks() -> None:
    # Regression (#13.9): with too large a learning rate s_dwell ran to ~1e3
    # (1e8 in longer runs), every weight became 0.0 and the logged `loss` read
    # ~1e-10 while dwell_loss was 1.7e7: TerminateOnNaN / early stopping blind.
    model, x, y = runaway_uncertainty_model()
    hist = model.fit(x, y, batch_size=32, epochs=5, verbose=0).history
    log_vars = np.asarray(model.weighting.log_vars)
    assert np.all(np.abs(log_vars) <= 10.0), log_vars
    assert model.weighting.at_bounds(model.task_names) == ["dwell"]
    # Each weight is >= 0.5 * exp(-10): the logged total reflects every task.
    floor = 0.5 * np.exp(-10.0) * (np.array(hist["click_loss"]) + np.array(hist["dwell_loss"]))
    assert np.all(np.array(hist["loss"]) >= 0.99 * floor), (hist["loss"], floor)
    assert min(hist["dwell_weight"]) >= 0.99 * 0.5 * np.exp(-10.0)


def test_bounds_config_and_validation() -> None:
    strategy = Uncertainty(init_log_var=1.0, log_var_bounds=(-3, 4))
    config = strategy.get_config()
    assert config["log_var_bounds"] == [-3.0, 4.0]
    assert Uncertainty.from_config(config).log_var_bounds == (-3.0, 4.0)
    assert Uncertainty(log_var_bounds=None).get_config()["log_var_bounds"] is None
    strategy.build_for_tasks([mk.Binary("a"), mk.Regression("b")])
    strategy.log_vars.assign([50.0, -50.0])  # assigned out of bounds: clipped in the objective
    _, weights = strategy.combine(tf.constant([1.0, 1.0]), training=False)
    np.testing.assert_allclose(weights, [np.exp(-4.0), 0.5 * np.exp(3.0)], rtol=1e-6)
    try:
        Uncertainty(init_log_var=20.0)
    except ValueError as err:
        assert "init_log_var" in str(err)
    else:
        raise AssertionError("init_log_var outside the bounds must raise")
