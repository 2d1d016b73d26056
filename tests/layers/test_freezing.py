"""Frozen library layers stay frozen across `.keras` save/load (issue #13, item 11)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import mtl_keras as mk
from mtl_keras import layers as L


def _data(n: int = 64) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = {
        "click": (x[:, 0] > 0).astype("float32"),
        "dwell": (x[:, 1] - x[:, 2]).astype("float32"),
        "spend": (x[:, 3] + x[:, 4]).astype("float32"),
    }
    return x, y


def _base(builder: str) -> mk.MultiTaskModel:
    keras.utils.set_random_seed(0)
    tasks = [mk.Binary("click"), mk.Regression("dwell")]
    inputs = keras.Input((6,), name="x")
    if builder == "mmoe":
        model = mk.builders.mmoe(inputs, tasks, num_experts=2, expert_units=(8,), tower_units=(4,))
    else:
        model = mk.builders.shared_bottom(inputs, tasks, trunk_units=(8, 8), tower_units=(4,))
    model.compile(keras.optimizers.Adam(0.01))
    x, y = _data()
    model.fit(x, {k: y[k] for k in ("click", "dwell")}, batch_size=32, epochs=1, verbose=0)
    return model


@pytest.mark.parametrize("builder", ["shared_bottom", "mmoe"])
def test_frozen_layers_stay_frozen_after_reload(builder: str, tmp_path) -> None:
    # Regression: after reload, composite layers (MLP, Experts, Gate ...)
    # said `trainable=False` but their sublayers' weights trained again, and
    # one epoch moved the old tasks' predictions by up to 2.6.
    bigger = mk.add_tasks(_base(builder), [mk.Regression("spend")], tower_units=(4,))
    bigger.compile(keras.optimizers.Adam(0.05))
    trainable_before = sorted(v.path for v in bigger.trainable_variables)
    path = tmp_path / "bigger.keras"
    bigger.save(path)
    loaded = keras.saving.load_model(path)
    assert sorted(v.path for v in loaded.trainable_variables) == trainable_before
    x, y = _data()
    before = loaded.predict(x, verbose=0)
    loaded.compile(keras.optimizers.Adam(0.05))
    loaded.fit(x, {"spend": y["spend"]}, batch_size=16, epochs=1, verbose=0)
    after = loaded.predict(x, verbose=0)
    for task in ("click", "dwell"):
        np.testing.assert_array_equal(after[task], before[task], err_msg=task)
    assert not np.allclose(after["spend"], before["spend"])


@pytest.mark.parametrize(
    "make",
    [
        lambda: L.MLP((4, 3), batch_norm=True),
        lambda: L.Experts(2, (4,)),
        lambda: L.Gate(2, units=(3,)),
    ],
    ids=["mlp", "experts", "gate"],
)
def test_from_config_of_a_frozen_layer_has_no_trainable_weights(make) -> None:
    layer = make()
    layer.trainable = False
    clone = layer.__class__.from_config(layer.get_config())
    clone.build((None, 5))
    assert clone.trainable is False
    assert clone.weights and clone.trainable_weights == []
    assert not any(v.trainable for v in clone.weights)


@keras.saving.register_keras_serializable("test_freezing")
class _UserComposite(keras.layers.Layer):
    """A user's composite layer that knows nothing about freezing."""

    def build(self, input_shape):
        self.inner = keras.layers.Dense(3)
        self.inner.build(input_shape)

    def call(self, x):
        return self.inner(x)


def test_any_frozen_layer_of_a_multitask_model_stays_frozen_after_reload(tmp_path) -> None:
    # The model re-applies freezing to every layer on construction (reload
    # included), not only to the library's layers.
    inputs = keras.Input((6,), name="x")
    trunk = _UserComposite(name="user_trunk")
    h = trunk(inputs)
    model = mk.MultiTaskModel(
        inputs,
        {"click": mk.Binary("click").head(h), "dwell": mk.Regression("dwell").head(h)},
        tasks=[mk.Binary("click"), mk.Regression("dwell")],
    )
    trunk.trainable = False
    before = sorted(v.path for v in model.trainable_variables)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.get_layer("user_trunk").trainable is False
    assert sorted(v.path for v in loaded.trainable_variables) == before
