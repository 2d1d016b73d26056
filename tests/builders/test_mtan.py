"""MTAN builder: conv and sequence trunks, attention masks, argument errors."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from _support.builders import run_builder_checks

import mtl_keras as mk
from mtl_keras.builders import mtan, mtan_attention_model


def _image_data(n: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8, 8, 2)).astype("float32")
    y = {
        "bright": (x[..., 0].mean(axis=(1, 2)) > 0).astype("float32"),
        "level": x[..., 1].mean(axis=(1, 2)).astype("float32") * 4.0,
    }
    return x, y


def _sequence_data(n: int = 48, steps: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, steps, 3)).astype("float32")
    tags = (x[..., 0] > 0).astype("int32")
    tags[: n // 2, -2:] = -1  # padded tail on half of the rows
    return x, {"tags": tags, "any_pos": (x[..., 1].mean(axis=1) > 0).astype("float32")}


def test_mtan_conv2d_passes_builder_checks_and_exposes_masks(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = _image_data()
    tasks = [mk.Binary("bright"), mk.Regression("level")]
    model = mtan(keras.Input((8, 8, 2), name="image"), tasks, trunk="conv2d", filters=(4, 8))
    run_builder_checks(model, x, y, tmp_path, epochs=3, batch_size=16)

    att = mtan_attention_model(model)
    masks = att.predict(x[:5], verbose=0)
    assert sorted(masks) == ["bright", "level"]
    assert [m.shape for m in masks["bright"]] == [(5, 8, 8, 4), (5, 4, 4, 8)]
    for m in masks["bright"] + masks["level"]:
        assert np.all((m > 0) & (m < 1))
    # Task-specific: attention modules are not shared between tasks.
    assert not np.allclose(masks["bright"][1], masks["level"][1])
    # The shared trunk is shared, the attention modules are per task.
    shared, per_task, _ = model.variable_groups()
    names = [model.trainable_variables[i].path for i in shared]
    assert any("block0_unit0" in n for n in names)
    assert not any("attention" in n for n in names)
    assert all(per_task)


@pytest.mark.parametrize("trunk", ["conv1d", pytest.param("bilstm", marks=pytest.mark.slow)])
def test_mtan_sequence_trunk_with_tagging(trunk, tmp_path):
    keras.utils.set_random_seed(0)
    x, y = _sequence_data()
    tasks = [mk.Tagging("tags", 2), mk.Binary("any_pos")]
    model = mtan(keras.Input((6, 3), name="seq"), tasks, trunk=trunk, filters=(4, 4))
    out = run_builder_checks(
        model, x, y, tmp_path, epochs=3, batch_size=16, check_saved_model=False
    )
    assert out["predictions"]["tags"].shape == (48, 6, 2)
    assert out["predictions"]["any_pos"].shape == (48, 1)
    masks = mtan_attention_model(model).predict(x[:2], verbose=0)
    assert masks["tags"][0].shape == (2, 6, 4)


def test_mtan_with_embedding_encoder():
    keras.utils.set_random_seed(0)
    ids = keras.Input((5,), dtype="int32", name="ids")
    model = mtan(
        ids,
        [mk.Tagging("pos", 3), mk.Multiclass("topic", 2)],
        trunk="conv1d",
        filters=(4,),
        encoder=keras.layers.Embedding(20, 4),
    )
    model.compile("adam")
    x = np.random.default_rng(0).integers(0, 20, size=(8, 5)).astype("int32")
    y = {"pos": x % 3, "topic": x[:, 0] % 2}
    hist = model.fit(x, y, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"trunk": "transformer"}, "trunk"),
        ({"filters": ()}, "filters"),
        ({"filters": (4, 0)}, "filters"),
        ({"kernel_size": 0}, "kernel_size"),
        ({"tower_units": (0,)}, "tower_units"),
        ({"trunk": "conv1d"}, "rank 3"),
    ],
)
def test_mtan_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mtan(keras.Input((8, 8, 2)), [mk.Binary("a")], **kwargs)


def test_mtan_tagging_needs_unpooled_sequence_trunk():
    with pytest.raises(ValueError, match="per token"):
        mtan(keras.Input((8, 8, 2)), [mk.Tagging("t", 2)], trunk="conv2d")
    with pytest.raises(ValueError, match="per token"):
        mtan(keras.Input((6, 3)), [mk.Tagging("t", 2)], trunk="conv1d", pool=True)
    with pytest.raises(ValueError, match="even"):
        mtan(keras.Input((6, 3)), [mk.Binary("a")], trunk="bilstm", filters=(3,))


def test_mtan_attention_model_rejects_other_models():
    model = mk.builders.shared_bottom(keras.Input((4,)), [mk.Binary("a")], trunk_units=(4,))
    with pytest.raises(ValueError, match="attention"):
        mtan_attention_model(model)


def _bn_momenta(model):
    return [
        layer.momentum
        for layer in model._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


def test_mtan_batch_norm_momentum_reaches_every_layer_and_config():
    inputs = keras.Input((8, 8, 2))
    model = mtan(inputs, [mk.Binary("a"), mk.Binary("b")], filters=(4, 8))
    momenta = _bn_momenta(model)
    assert momenta and set(momenta) == {0.9}  # trunk, match units and attention modules
    model = mtan(inputs, [mk.Binary("a")], filters=(4, 8), batch_norm_momentum=0.99)
    assert set(_bn_momenta(model)) == {0.99}
    for layer in (
        mk.layers.TrunkUnit("conv2d", 4, batch_norm_momentum=0.8),
        mk.layers.TaskAttention(4, batch_norm_momentum=0.8),
    ):
        clone = type(layer).from_config(layer.get_config())
        assert clone.batch_norm_momentum == 0.8 and clone.norm.momentum == 0.8
    for bad in (1.0, -0.1, True, "0.9"):
        with pytest.raises(ValueError, match="batch_norm_momentum"):
            mtan(inputs, [mk.Binary("a")], batch_norm_momentum=bad)


def test_mtan_inference_mode_matches_training_mode_after_brief_training():
    # Regression: with Keras' default BN momentum (0.99) the moving statistics
    # still lean on their initial values after dozens of steps, and the
    # inference-mode accuracy of a model that fits well fell to chance.
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = (rng.uniform(size=(256, 8, 8, 1)) * 0.2).astype("float32")
    y = {"bright": (x[:, :4].mean(axis=(1, 2, 3)) > x[:, 4:].mean(axis=(1, 2, 3)))}
    y["bright"] = y["bright"].astype("float32")
    model = mtan(keras.Input((8, 8, 1)), [mk.Binary("bright")], filters=(4, 8))
    model.compile(keras.optimizers.Adam(3e-3))
    model.fit(x, y, batch_size=32, epochs=10, verbose=0)  # 80 steps (0.99: inference acc. 0.54)

    def accuracy(training):
        p = np.asarray(model(x, training=training)["bright"])[:, 0]
        return float(((p > 0.5) == (y["bright"] > 0.5)).mean())

    fit_acc, inference_acc = accuracy(True), accuracy(False)
    assert fit_acc > 0.7
    assert inference_acc > fit_acc - 0.1
