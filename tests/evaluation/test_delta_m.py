"""delta_m on hand-computed examples."""

from __future__ import annotations

import pandas as pd
import pytest

from mtl_keras.evaluation import delta_m


def test_higher_is_better_gain_and_loss():
    # a: (0.9 - 0.8) / 0.8 = +12.5%; b: (0.6 - 0.75) / 0.75 = -20%  -> mean -3.75%
    out = delta_m({"a": {"auc": 0.9}, "b": {"auc": 0.6}}, {"a": {"auc": 0.8}, "b": {"auc": 0.75}})
    assert out.per_task == pytest.approx({"a": 12.5, "b": -20.0})
    assert out.value == pytest.approx(-3.75)
    assert "higher is better" in out.explanation and "auc" in out.explanation


def test_lower_is_better_sign_flips():
    # mae down 2.0 -> 1.5 is a gain of +25%; rmse up 2 -> 3 is a loss of -50%.
    out = delta_m({"r": {"mae": 1.5, "rmse": 3.0}}, {"r": {"mae": 2.0, "rmse": 2.0}})
    assert out.per_metric["r"] == pytest.approx({"mae": 25.0, "rmse": -50.0})
    assert out.value == pytest.approx(-12.5)
    assert out.higher_is_better == {"mae": False, "rmse": False}


def test_mixed_directions_and_task_averaging():
    # Task c: auc +10% and accuracy -5% -> +2.5; task d: mae 4 -> 5 = -25%, r2 .5 -> .6 = +20%
    # -> -2.5. Δm = (2.5 - 2.5) / 2 = 0; a custom metric "err" (lower better) on task e:
    # 10 -> 8 = +20%. Δm = (2.5 - 2.5 + 20) / 3.
    mtl = {"c": {"auc": 0.88, "accuracy": 0.76}, "d": {"mae": 5.0, "r2": 0.6}, "e": {"err": 8.0}}
    stl = {"c": {"auc": 0.8, "accuracy": 0.8}, "d": {"mae": 4.0, "r2": 0.5}, "e": {"err": 10.0}}
    out = delta_m(mtl, stl, higher_is_better={"err": False})
    assert out.per_task == pytest.approx({"c": 2.5, "d": -2.5, "e": 20.0})
    assert out.value == pytest.approx(20.0 / 3)
    assert float(out) == out.value


def test_dataframes_and_metric_selection():
    mtl = pd.DataFrame({"auc": [0.9], "accuracy": [0.5], "rows": [10]}, index=["a"])
    stl = pd.DataFrame({"auc": [0.75], "accuracy": [1.0], "rows": [10]}, index=["a"])
    assert delta_m(mtl, stl).value == pytest.approx((20.0 - 50.0) / 2)  # rows ignored
    assert delta_m(mtl, stl, metrics=["auc"]).value == pytest.approx(20.0)


def test_identical_results_give_zero():
    res = {"a": {"auc": 0.7, "mae": 1.0}}
    assert delta_m(res, res).value == 0.0


def test_missing_baseline_task_raises():
    with pytest.raises(ValueError, match="no single-task baseline for task 'b'"):
        delta_m({"a": {"auc": 0.9}, "b": {"auc": 0.9}}, {"a": {"auc": 0.8}})


def test_missing_baseline_metric_raises():
    with pytest.raises(ValueError, match="baseline for task 'a' has no metric 'mae'"):
        delta_m({"a": {"auc": 0.9, "mae": 1.0}}, {"a": {"auc": 0.8}})


def test_unknown_direction_and_bad_baseline_raise():
    with pytest.raises(ValueError, match="direction of metric 'err' unknown"):
        delta_m({"a": {"err": 1.0}}, {"a": {"err": 2.0}}, metrics=["err"])
    with pytest.raises(ValueError, match="must be > 0"):
        delta_m({"a": {"r2": 0.1}}, {"a": {"r2": -0.2}})
