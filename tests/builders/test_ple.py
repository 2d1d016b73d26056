"""PLE / CGC builder."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from _support import toy_data
from _support.builders import run_builder_checks

import mtl_keras as mk
from mtl_keras.builders.gates import gate_layers, gate_model

TASKS = [mk.Binary("click"), mk.Regression("dwell")]


def small_ple(tasks=TASKS, **kwargs):
    keras.utils.set_random_seed(0)
    args = {"expert_units": (8,), "tower_units": (4,), **kwargs}
    return mk.builders.ple(keras.Input((8,), name="x"), tasks, **args)


def test_ple_passes_builder_checks(tmp_path):
    x, y = toy_data(128)
    run_builder_checks(small_ple(num_levels=2), x, y, tmp_path)


def test_ple_gate_widths_and_rows_sum_to_one():
    x, _ = toy_data(32)
    model = small_ple(num_levels=3, num_shared_experts=2, num_task_experts=3)
    gates = gate_layers(model)
    # Task gates: own + shared experts; shared gates (not on the last level):
    # every task's + shared experts.
    assert sorted(gates) == sorted(
        [f"{t}_level{level}" for t in ("click", "dwell") for level in range(3)]
        + ["shared_level0", "shared_level1"]
    )
    assert gates["click_level2"].num_experts == 3 + 2
    assert gates["shared_level1"].num_experts == 2 * 3 + 2
    for key, w in gate_model(model).predict(x, verbose=0).items():
        np.testing.assert_allclose(w.sum(axis=-1), 1.0, atol=1e-6, err_msg=key)


def test_cgc_single_task_trains(tmp_path):
    x, y = toy_data(128)
    model = small_ple(tasks=[mk.Regression("dwell")], num_levels=1)
    run_builder_checks(model, x, {"dwell": y["dwell"]}, tmp_path, check_saved_model=False)
    assert list(gate_layers(model)) == ["dwell_level0"]


def test_ple_without_shared_experts():
    x, _ = toy_data(8)
    model = small_ple(num_shared_experts=0)
    assert sorted(model.predict(x, verbose=0)) == ["click", "dwell"]
    assert gate_layers(model)["click_level1"].num_experts == 2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_levels": 0}, "num_levels"),
        ({"num_task_experts": 0}, "num_task_experts"),
        ({"num_shared_experts": -1}, "num_shared_experts"),
        ({"expert_units": ()}, "expert_units"),
        ({"tower_units": ("a",)}, "tower_units"),
    ],
)
def test_ple_argument_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        small_ple(**kwargs)
