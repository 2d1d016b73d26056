"""Cascade (task DAG) and ESMM builders."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from _support import toy_data
from _support.builders import run_builder_checks

import mtl_keras as mk
from mtl_keras.builders.cascade import topological_order

TASKS = [mk.Binary("click"), mk.Regression("dwell")]


def esmm_data(n: int = 256, seed: int = 0):
    """Impressions: click if x0 > 0; conversion only among clicks (x1 > 0)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    click = (x[:, 0] > 0).astype("float32")
    conversion = click * (x[:, 1] > 0)
    return x, {"ctr": click, "ctcvr": conversion.astype("float32")}


def small_esmm(**kwargs):
    keras.utils.set_random_seed(0)
    return mk.builders.esmm(keras.Input((8,), name="x"), tower_units=(8,), **kwargs)


def test_cascade_passes_builder_checks(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = toy_data(128)
    model = mk.builders.cascade(
        keras.Input((8,), name="x"),
        TASKS,
        dependencies={"dwell": ["click"]},
        trunk_units=(8,),
        tower_units=(4,),
    )
    # dwell's tower reads the trunk (8) + click's prediction (1) + hidden (4).
    assert model.get_layer("dwell_tower").input.shape == (None, 13)
    run_builder_checks(model, x, y, tmp_path)


def test_cascade_prediction_only_and_no_dependencies():
    tasks = [mk.Binary("a"), mk.Binary("b"), mk.Regression("c")]
    model = mk.builders.cascade(
        keras.Input((8,)),
        tasks,
        dependencies={"c": ["a", "b"], "b": ["a"]},
        trunk_units=(8,),
        tower_units=(4,),
        pass_hidden=False,
    )
    assert model.get_layer("c_tower").input.shape == (None, 10)
    plain = mk.builders.cascade(keras.Input((8,)), tasks, trunk_units=(8,), tower_units=(4,))
    assert plain.get_layer("c_tower").input.shape == (None, 8)


def test_topological_order():
    assert topological_order(["c", "b", "a"], {"c": ["b"], "b": ["a"]}) == ["a", "b", "c"]
    assert topological_order(["x", "y"], {}) == ["x", "y"]


@pytest.mark.parametrize(
    "dependencies, match",
    [
        ({"dwell": ["clicks"]}, "'dwell' depends on unknown task 'clicks'"),
        ({"purchase": ["click"]}, "unknown task 'purchase'"),
        (
            {"dwell": ["click"], "click": ["dwell"]},
            "cycle: (click -> dwell -> click|dwell -> click -> dwell)",
        ),
        ({"click": ["click"]}, "cycle: click -> click"),
        ({"dwell": "click"}, "list of parent"),
        (["click"], "must be a dict"),
    ],
)
def test_cascade_dag_validation(dependencies, match):
    with pytest.raises(ValueError, match=match):
        mk.builders.cascade(keras.Input((8,)), TASKS, dependencies=dependencies)


def test_cascade_argument_validation():
    with pytest.raises(ValueError, match="pass_predictions"):
        mk.builders.cascade(keras.Input((8,)), TASKS, pass_predictions=False, pass_hidden=False)
    with pytest.raises(ValueError, match="tower_units"):
        mk.builders.cascade(keras.Input((8,)), TASKS, tower_units=())


def test_esmm_passes_builder_checks(tmp_path):
    x, y = esmm_data(128)
    out = run_builder_checks(small_esmm(), x, y, tmp_path)
    assert list(out["predictions"]) == ["ctr", "cvr", "ctcvr"]


def test_esmm_ctcvr_is_exactly_ctr_times_cvr():
    x, y = esmm_data(64)
    model = small_esmm(trunk_units=(8,))
    model.compile(keras.optimizers.Adam(0.01))
    history = model.fit(x, y, epochs=1, verbose=0).history
    # cvr has no labels: its loss is 0 and it learns only through ctcvr.
    assert history["cvr_loss"] == [0.0]
    pred = model.predict(x, verbose=0)
    np.testing.assert_array_equal(pred["ctcvr"], pred["ctr"] * pred["cvr"])
    assert [t.weight for t in model.tasks] == [1.0, 0.0, 1.0]


def test_esmm_custom_names_and_validation():
    model = small_esmm(ctr_task="click", cvr_task=mk.Binary("buy", weight=0.5), ctcvr_task="both")
    assert model.task_names == ["click", "buy", "both"]
    with pytest.raises(ValueError, match="distinct"):
        small_esmm(ctr_task="a", cvr_task="a")
    with pytest.raises(ValueError, match="Binary"):
        small_esmm(cvr_task=mk.Regression("cvr"))
    with pytest.raises(ValueError, match="trunk_units"):
        small_esmm(trunk_units=(0,))
