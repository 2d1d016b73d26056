"""split builder: shared layers up to `split_at`, per-task clones after it."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from _support import toy_data
from _support.builders import run_builder_checks

import mtl_keras as mk
from mtl_keras.builders import split


def _sequential_backbone() -> keras.Sequential:
    return keras.Sequential(
        [
            keras.Input((8,), name="x"),
            keras.layers.Dense(16, activation="relu", name="shared_1"),
            keras.layers.Dense(12, activation="relu", name="shared_2"),
            keras.layers.Dense(8, activation="relu", name="top_1"),
            keras.layers.Dropout(0.1, name="top_drop"),
            keras.layers.Dense(6, activation="relu", name="top_2"),
        ],
        name="backbone",
    )


def test_split_sequential_passes_builder_checks(tmp_path):
    keras.utils.set_random_seed(0)
    backbone = _sequential_backbone()
    tasks = [mk.Binary("click"), mk.Regression("dwell")]
    model = split(backbone, tasks, split_at="shared_2", tower_units=(4,))
    names = {layer.name for layer in model.layers}
    # Shared layers appear once; the tail is cloned per task with its config.
    assert {"shared_1", "shared_2"} <= names
    for task in ("click", "dwell"):
        assert {f"{task}_top_1", f"{task}_top_drop", f"{task}_top_2"} <= names
        clone = model.get_layer(f"{task}_top_2")
        assert clone.units == 6 and clone.get_config()["activation"] == "relu"
        assert model.get_layer(f"{task}_top_drop").rate == 0.1
    assert "top_1" not in names

    # Shared layers keep the backbone's weights; clones get fresh ones.
    np.testing.assert_array_equal(
        model.get_layer("shared_2").kernel.numpy(), backbone.get_layer("shared_2").kernel.numpy()
    )
    assert model.get_layer("click_top_1") is not backbone.get_layer("top_1")
    assert not np.allclose(
        model.get_layer("click_top_1").kernel.numpy(),
        model.get_layer("dwell_top_1").kernel.numpy(),
    )
    shared, per_task, _ = model.variable_groups()
    shared_paths = {model.trainable_variables[i].path for i in shared}
    assert any("shared_2" in p for p in shared_paths)
    assert not any("top_1" in p for p in shared_paths)
    assert all(per_task)

    x, y = toy_data(128)
    run_builder_checks(model, x, y, tmp_path)


def test_split_functional_dag_with_skip_connection():
    keras.utils.set_random_seed(0)
    inp = keras.Input((8,), name="x")
    a = keras.layers.Dense(8, activation="relu", name="stem")(inp)
    b = keras.layers.Dense(8, activation="relu", name="mid")(a)
    c = keras.layers.Dense(8, activation="relu", name="branch")(b)
    merged = keras.layers.Add(name="skip")([a, c])  # skip from before the split
    out = keras.layers.Dense(4, name="head_in")(merged)
    backbone = keras.Model(inp, out)
    model = split(backbone, [mk.Binary("click"), mk.Regression("dwell")], split_at="mid")
    names = {layer.name for layer in model.layers}
    assert {"stem", "mid", "click_branch", "dwell_skip", "click_head_in"} <= names
    # Same function as the backbone for the shared part (stem feeds the skip).
    x, y = toy_data(64)
    model.compile("adam")
    hist = model.fit(x, y, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])


def test_split_at_last_layer_is_hard_sharing():
    backbone = _sequential_backbone()
    model = split(backbone, [mk.Binary("a"), mk.Binary("b")], split_at="top_2")
    assert not [layer for layer in model.layers if layer.name.startswith("a_top")]


def test_split_sequence_backbone_with_tagging():
    keras.utils.set_random_seed(0)
    inp = keras.Input((5,), dtype="int32", name="ids")
    h = keras.layers.Embedding(20, 8, name="emb")(inp)
    h = keras.layers.Conv1D(8, 3, padding="same", name="conv_shared")(h)
    h = keras.layers.Conv1D(8, 3, padding="same", activation="relu", name="conv_top")(h)
    model = split(
        keras.Model(inp, h), [mk.Tagging("pos", 3), mk.Binary("q")], split_at="conv_shared"
    )
    model.compile("adam")
    x = np.random.default_rng(0).integers(0, 20, size=(8, 5)).astype("int32")
    pred = model.predict(x, verbose=0)
    assert pred["pos"].shape == (8, 5, 3) and pred["q"].shape == (8, 1)
    hist = model.fit(x, {"pos": x % 3, "q": (x[:, 0] > 9).astype("float32")}, verbose=0)
    assert np.isfinite(hist.history["loss"][0])


def test_split_argument_errors():
    backbone = _sequential_backbone()
    with pytest.raises(ValueError, match="not a layer"):
        split(backbone, [mk.Binary("a")], split_at="nope")
    with pytest.raises(ValueError, match="built with"):
        split(keras.Sequential([keras.layers.Dense(2)]), [mk.Binary("a")], split_at="dense")
    with pytest.raises(ValueError, match="keras.Model"):
        split(keras.layers.Dense(2), [mk.Binary("a")], split_at="dense")
    with pytest.raises(ValueError, match="pooling"):
        split(backbone, [mk.Binary("a")], split_at="shared_1", pooling="sum")
    with pytest.raises(ValueError, match="per token"):
        split(backbone, [mk.Tagging("t", 3)], split_at="shared_1")
    inp = keras.Input((4,))
    two = keras.Model(inp, [keras.layers.Dense(2)(inp), keras.layers.Dense(3)(inp)])
    with pytest.raises(ValueError, match="one output"):
        split(two, [mk.Binary("a")], split_at=two.layers[1].name)
