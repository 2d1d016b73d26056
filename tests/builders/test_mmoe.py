"""MMoE builder, its layers and the gate inspection helpers."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from _support import toy_data
from _support.builders import run_builder_checks

import mtl_keras as mk
from mtl_keras.builders.gates import gate_layers, gate_model, gate_utilisation
from mtl_keras.layers import ExpertMixture, Experts, Gate

TASKS = [mk.Binary("click"), mk.Regression("dwell")]


def small_mmoe(**kwargs):
    keras.utils.set_random_seed(0)
    args = {"num_experts": 3, "expert_units": (8,), "tower_units": (4,), **kwargs}
    return mk.builders.mmoe(keras.Input((8,), name="x"), TASKS, **args)


def test_mmoe_passes_builder_checks(tmp_path):
    x, y = toy_data(128)
    out = run_builder_checks(small_mmoe(gate_units=(4,)), x, y, tmp_path)
    # Gates stay inspectable after a .keras round trip.
    weights = gate_model(out["keras_model"]).predict(x[:5], verbose=0)
    assert sorted(weights) == ["click", "dwell"]


def test_gate_rows_sum_to_one_and_utilisation():
    x, _ = toy_data(64)
    model = small_mmoe()
    weights = gate_model(model).predict(x, verbose=0)
    for task in ("click", "dwell"):
        assert weights[task].shape == (64, 3)
        assert np.all(weights[task] >= 0)
        np.testing.assert_allclose(weights[task].sum(axis=-1), 1.0, atol=1e-6)
    util = gate_utilisation(model, x)
    assert sorted(util) == ["click", "dwell"]
    np.testing.assert_allclose(util["click"], weights["click"].mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(util["dwell"].sum(), 1.0, atol=1e-6)


def test_gate_utilisation_accepts_raw_string_features():
    # Regression: gate_utilisation predicted with a plain keras.Model, which
    # rejects NumPy str arrays that MultiTaskModel.predict accepts.
    rng = np.random.default_rng(0)
    raw = {
        "colour": rng.choice(["red", "green", "blue"], 40),
        "size": rng.normal(size=40).astype("float32"),
    }
    encoder = mk.layers.TabularEncoder.adapt(raw, categorical=["colour"], numeric=["size"])
    keras.utils.set_random_seed(0)
    model = mk.builders.mmoe(encoder.inputs(), TASKS, encoder=encoder, num_experts=2,
                             expert_units=(4,), tower_units=())  # fmt: skip
    model.predict(raw, verbose=0)  # the model itself takes the raw arrays
    util = gate_utilisation(model, raw, batch_size=16)
    assert sorted(util) == ["click", "dwell"]
    np.testing.assert_allclose(util["click"].sum(), 1.0, atol=1e-6)


def test_gate_helpers_need_gates():
    model = mk.builders.shared_bottom(keras.Input((8,)), TASKS, trunk_units=(4,))
    with pytest.raises(ValueError, match="no Gate layers"):
        gate_layers(model)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_experts": 0}, "num_experts"),
        ({"num_experts": 2.0}, "num_experts"),
        ({"expert_units": ()}, "expert_units"),
        ({"tower_units": (0,)}, "tower_units"),
        ({"gate_units": 4}, "gate_units"),
    ],
)
def test_mmoe_argument_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        small_mmoe(**kwargs)


def test_mmoe_needs_tasks():
    with pytest.raises(ValueError, match="empty"):
        mk.builders.mmoe(keras.Input((8,)), [])


def test_layer_configs_round_trip():
    for layer in (
        Experts(2, (4, 3), dropout=0.1, l2=0.01, name="e"),
        Gate(3, (4,), task="t", level=1, name="g"),
        ExpertMixture(name="m"),
    ):
        clone = layer.__class__.from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()
    assert Gate(2, task="t", level=1).key == "t_level1"
    assert Gate(2).key == "shared"
    with pytest.raises(ValueError, match="num_experts"):
        Experts(0)
    with pytest.raises(ValueError, match="units"):
        Experts(2, ())
