"""single_task_baselines: one same-architecture model per task, timed and reported."""

from __future__ import annotations

import keras
import pytest
from _support import toy_data

import mtl_keras as mk
from mtl_keras.evaluation import delta_m, single_task_baselines


def _build(tasks):
    return mk.builders.shared_bottom(keras.Input((8,)), tasks, trunk_units=(8,), tower_units=())


def test_single_task_baselines_and_delta_m():
    x, y = toy_data(128)
    xv, yv = toy_data(64, seed=1)
    tasks = [mk.Binary("click"), mk.Regression("dwell")]
    base = single_task_baselines(
        _build, tasks, (x, y), (xv, yv), epochs=2, batch_size=32, keep_models=True
    )
    assert set(base.results) == {"click", "dwell"}
    assert {"auc", "accuracy", "rows"} <= set(base.results["click"])
    assert {"mae", "rmse", "r2"} <= set(base.results["dwell"])
    assert base.results["click"]["rows"] == 64  # reported on val_data
    assert all(s > 0 for s in base.train_seconds.values())
    assert base.total_train_seconds == pytest.approx(sum(base.train_seconds.values()))
    # Same architecture, one head each.
    assert base.runs["click"].model.task_names == ["click"]
    assert len(base.runs["click"].history["loss"]) == 2
    # Δm of the baselines against themselves is 0.
    assert delta_m(base.results, base.results, metrics=None).value == 0.0


def test_build_fn_must_return_the_task():
    x, y = toy_data(32)
    with pytest.raises(ValueError, match="without that task"):
        single_task_baselines(
            lambda t: _build([mk.Binary("other")]), [mk.Binary("click")], (x, y), epochs=1
        )
