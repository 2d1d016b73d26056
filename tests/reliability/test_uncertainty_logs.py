"""Uncertainty logs its full objective separately from `loss` (issue #13,
item 9): with runaway log-variances `loss` stays visible (not 0.0 while a
task's loss is huge) and `uncertainty_objective` is what the optimizer
minimises, so down-weighting a task cannot hide in it."""

from __future__ import annotations

import keras
import numpy as np
from _support.toy import runaway_uncertainty_model

import mtl_keras as mk


def test_runaway_log_variances_are_visible_in_loss_and_objective():
    model, x, y = runaway_uncertainty_model()
    hist = model.fit(x, y, batch_size=32, epochs=4, verbose=0).history
    assert "uncertainty_objective" in hist and "val_uncertainty_objective" not in hist
    assert model.weighting.at_bounds(model.task_names) == ["dwell"]
    logs = model.evaluate(x, y, batch_size=128, verbose=0, return_dict=True)
    s = np.asarray(model.weighting.log_vars, "float64")
    losses = np.array([logs["click_loss"], logs["dwell_loss"]])
    weights = np.array([1.0, 0.5]) * np.exp(-s)
    np.testing.assert_allclose(logs["loss"], weights @ losses, rtol=1e-4)
    np.testing.assert_allclose(
        logs["uncertainty_objective"], weights @ losses + 0.5 * s.sum(), rtol=1e-4
    )
    # Not 0.0 while the dwell loss is huge: the weight floor keeps it visible.
    assert logs["loss"] >= 0.5 * np.exp(-10.0) * logs["dwell_loss"] * 0.99
    assert logs["dwell_loss"] > 1.0


def test_only_uncertainty_logs_an_objective():
    x = np.zeros((8, 3), "float32")
    tasks = [mk.Binary("click"), mk.Regression("dwell")]
    model = mk.builders.shared_bottom(keras.Input((3,), name="x"), tasks, trunk_units=(4,))
    model.compile("sgd", weighting="dwa")
    y = {"click": np.zeros(8, "float32"), "dwell": np.zeros(8, "float32")}
    logs = model.fit(x, y, verbose=0, validation_data=(x, y)).history
    assert not any("objective" in k for k in logs)
    model.compile("sgd", weighting="uncertainty")
    logs = model.fit(x, y, verbose=0, validation_data=(x, y)).history
    assert "uncertainty_objective" in logs and "val_uncertainty_objective" in logs
