"""builders.fusion: missing modalities, inspection, rep_grad, saving and serving."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from fusion_helpers import ALL, TASKS, Encoders, build, copy_weights, data, without

import mtl_keras as mk
from mtl_keras.builders.fusion import (
    Modality,
    complete_request,
    fusion_weight_model,
    fusion_weights,
    modality_names,
)
from mtl_keras.export import check_export, export_saved_model
from mtl_keras.inputs import strings_to_tensors
from mtl_keras.weighting.jacobian import task_jacobian

FUSIONS = ("concat", "attention", "late")
INPUTS = {"tabular": ["city", "age"], "image": ["image"], "text": ["text"]}


def _predict(model, x):
    return {k: np.asarray(v) for k, v in model.predict(x, verbose=0).items()}


@pytest.mark.parametrize("fusion", FUSIONS)
def test_inputs_masks_and_representation(fusion):
    keras.utils.set_random_seed(0)
    model = build(Encoders(), fusion)
    assert sorted(model.input) == sorted(
        ["city", "age", "image", "text", "tabular_mask", "image_mask", "text_mask"]
    )
    assert modality_names(model) == list(ALL)
    assert model.representation == ("trunk" if fusion == "concat" else "modality_tokens")
    x, _ = data()
    out = _predict(model, x)
    assert out["a"].shape == (len(x["age"]), 1) and out["b"].shape == (len(x["age"]), 1)


# Each fusion with a different missing modality keeps the default run short.
@pytest.mark.parametrize(
    ("fusion", "missing"), [("concat", "image"), ("attention", "text"), ("late", "tabular")]
)
def test_a_missing_modality_is_ignored_whatever_its_inputs_hold(fusion, missing):
    keras.utils.set_random_seed(0)
    model = build(Encoders(), fusion)
    x, _ = data()
    x[f"{missing}_mask"][::2] = 0.0  # every other row lacks the modality
    garbled = without(x, missing, INPUTS[missing])
    garbled[f"{missing}_mask"] = x[f"{missing}_mask"]
    ref, out = _predict(model, x), _predict(model, garbled)
    for task in ("a", "b"):
        np.testing.assert_allclose(out[task][::2], ref[task][::2], rtol=1e-5, atol=1e-6)
        # rows that have the modality do depend on it
        assert not np.allclose(out[task][1::2], ref[task][1::2])


@pytest.mark.parametrize(
    ("fusion", "missing"), [("attention", "image"), ("attention", "tabular"), ("late", "text")]
)
def test_fusion_with_a_missing_modality_equals_fusion_over_the_present_ones(fusion, missing):
    keras.utils.set_random_seed(0)
    encoders = Encoders()
    full = build(encoders, fusion)
    kept = [i for i, m in enumerate(ALL) if m != missing]
    sub = build(encoders, fusion, [ALL[i] for i in kept])  # shares the encoders
    copy_weights(full, sub, kept)
    x, _ = data()
    x_missing = without(x, missing, INPUTS[missing])  # the whole batch lacks it
    x_sub = {k: v for k, v in x.items() if k not in INPUTS[missing] + [f"{missing}_mask"]}
    ref = _predict(sub, x_sub)
    out = _predict(full, x_missing)
    for task in ("a", "b"):
        np.testing.assert_allclose(out[task], ref[task], rtol=1e-5, atol=1e-6)
    w_full, w_sub = fusion_weights(full, x_missing), fusion_weights(sub, x_sub)
    for task in ("a", "b"):
        assert w_full[task][missing] == 0.0
        for m in w_sub[task]:
            assert w_full[task][m] == pytest.approx(w_sub[task][m], rel=1e-5)


def test_fusion_weights_are_per_task_and_follow_the_mask():
    keras.utils.set_random_seed(0)
    model = build(Encoders(), "attention")
    x, _ = data()
    x["image_mask"][:] = 0.0
    x["text_mask"][:12] = 0.0
    w = fusion_weight_model(model).predict(strings_to_tensors(x), verbose=0)
    assert sorted(w) == ["a", "b"]
    for task in ("a", "b"):
        np.testing.assert_array_equal(w[task][:, 1], 0.0)
        np.testing.assert_array_equal(w[task][:12, 2], 0.0)
        np.testing.assert_allclose(w[task][:12, 0], 1.0, rtol=1e-6)  # tabular alone
        np.testing.assert_allclose(w[task].sum(axis=1), 1.0, rtol=1e-6)
    means = fusion_weights(model, x)
    assert means["a"]["image"] == 0.0
    assert sum(means["a"].values()) == pytest.approx(1.0, rel=1e-5)
    # Task queries differ, so the tasks weigh the same rows differently.
    assert not np.allclose(w["a"][12:], w["b"][12:])
    with pytest.raises(ValueError, match="no FusionWeights"):
        fusion_weights(build(Encoders(), "concat"), x)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_chain_rule_through_the_declared_representation_is_exact(fusion):
    keras.utils.set_random_seed(0)
    encoders = Encoders()
    model = build(encoders, fusion)
    x, y = data()
    x = {k: tf.convert_to_tensor(v) for k, v in strings_to_tensors(x).items()}
    with tf.GradientTape(persistent=True) as tape:
        preds, reps = model._call_with_representation(x)
        losses = tf.stack([tf.reduce_mean(tf.square(preds[t] - y[t])) for t in ("a", "b")])
    shared_ids, _, _ = model.variable_groups()
    shared = [model.trainable_variables[i] for i in shared_ids]
    # the encoders' weights are shared parameters below the representation
    encoder_vars = [
        *encoders.tabular.trainable_variables,
        *encoders.image.trainable_variables,
        *encoders.text.trainable_variables,
    ]
    assert {id(v) for v in encoder_vars} <= {id(v) for v in shared}
    direct = task_jacobian(tape, losses, shared, method="loop")
    chained = task_jacobian(tape, losses, shared, method="loop", representation=reps)
    assert float(tf.reduce_max(tf.abs(direct))) > 0
    np.testing.assert_allclose(chained.numpy(), direct.numpy(), rtol=1e-4, atol=1e-6)


def test_upgrad_rep_grad_trains_a_fused_model():
    keras.utils.set_random_seed(0)
    # No text: tracing the BiLSTM would only slow this test down.
    model = build(Encoders(), "attention", ("tabular", "image"))
    x, y = data(64)
    del x["text"], x["text_mask"]
    x["image_mask"][::3] = 0.0  # rows without a picture train too
    model.compile(keras.optimizers.Adam(0.02), weighting=mk.weighting.UPGrad(rep_grad=True))
    history = model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    losses = history.history["loss"]
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.8 * losses[0]


def test_keras_round_trip_and_saved_model_serving_without_a_modality(tmp_path):
    keras.utils.set_random_seed(0)
    model = build(Encoders(), "attention")
    x, _ = data()
    x["text_mask"][:5] = 0.0
    ref = _predict(model, x)

    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(_predict(loaded, x)["b"], ref["b"], rtol=1e-5, atol=1e-6)
    assert modality_names(loaded) == list(ALL)

    export = export_saved_model(model, tmp_path / "export")
    report = check_export(
        export, model, {k: v[:6] for k, v in x.items()}, signatures=["serving_default"]
    )
    assert "image_mask" in report["signatures"]["serving_default"]["inputs"]
    with open(os.path.join(export, "assets.extra", "mtl_keras.json")) as f:
        meta = json.load(f)
    assert meta["modalities"]["tabular"] == {"inputs": ["city", "age"], "mask": "tabular_mask"}

    # A client request without the picture: completed from the export's
    # metadata, served by the SavedModel like a row whose image mask is 0.
    request = {k: x[k] for k in ("city", "age", "text")}
    full = complete_request(request, export)
    assert sorted(full) == sorted(model.input)
    np.testing.assert_array_equal(full["image_mask"], 0.0)
    np.testing.assert_array_equal(full["text_mask"], 1.0)
    assert full["image"].shape == x["image"].shape
    serve = tf.saved_model.load(export).signatures["serving_default"]
    served = serve(**{k: tf.constant(v) for k, v in full.items()})
    expected = _predict(
        model,
        {
            **x,
            "image_mask": np.zeros_like(x["image_mask"]),
            "text_mask": np.ones_like(x["text_mask"]),
        },
    )
    np.testing.assert_allclose(served["a"].numpy(), expected["a"], rtol=1e-5, atol=1e-6)
    assert complete_request(request, model).keys() == full.keys()
    with pytest.raises(ValueError, match="Modality 'tabular'"):
        complete_request({"city": x["city"], "text": x["text"]}, model)
    with pytest.raises(ValueError, match="Unknown input"):
        complete_request({"photo": x["image"]}, model)


def test_task_tensorboard_logs_fusion_weights(tmp_path):
    from mtl_keras.callbacks import TaskTensorBoard

    keras.utils.set_random_seed(0)
    model = build(Encoders(), "late", ("tabular", "image"))
    model.compile("adam")
    x, y = data()
    del x["text"], x["text_mask"]
    x["image_mask"][:] = 0.0
    tb = TaskTensorBoard(str(tmp_path), write_graph=False, gate_data=x)
    model.fit(x, y, epochs=1, batch_size=24, callbacks=[tb], verbose=0)
    scalars = {}
    for name in os.listdir(tmp_path / "train"):
        for event in tf.compat.v1.train.summary_iterator(str(tmp_path / "train" / name)):
            for value in event.summary.value:
                scalars[value.tag] = float(tf.make_ndarray(value.tensor))
    expected = fusion_weights(model, x)
    for task in ("a", "b"):
        for m in ("tabular", "image"):
            assert scalars[f"fusion/{task}/{m}"] == pytest.approx(expected[task][m], rel=1e-5)
        assert scalars[f"fusion/{task}/image"] == 0.0


def test_argument_errors():
    enc = Encoders()
    mods = enc.modalities()
    with pytest.raises(ValueError, match="`fusion` must be one of"):
        mk.builders.fusion(mods, TASKS, fusion="gated")
    with pytest.raises(ValueError, match="distinct"):
        mk.builders.fusion([mods[0], mods[0]], TASKS)
    with pytest.raises(ValueError, match="list of builders.fusion.Modality"):
        mk.builders.fusion(mods[0], TASKS)
    with pytest.raises(ValueError, match="already used"):
        mk.builders.fusion([mods[1], Modality("photo", enc.image_input, enc.image)], TASKS)
    with pytest.raises(ValueError, match="per token"):
        mk.builders.fusion(mods, [mk.Tagging("ner", num_tags=3)])
    with pytest.raises(ValueError, match="fusion_dim"):
        mk.builders.fusion(mods, TASKS, fusion_dim=0)
    with pytest.raises(ValueError, match="unsupported encoder output"):
        mk.builders.fusion(
            [Modality("v", keras.Input((2, 2, 2, 1), name="v"), keras.layers.Identity())], TASKS
        )


def test_keras_hub_text_backbone_as_a_modality_pools_real_tokens_only():
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(0)
    bert = keras_hub.models.BertBackbone(
        vocabulary_size=20,
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=6,
    )
    inputs = {
        "token_ids": keras.Input((6,), dtype="int32", name="token_ids"),
        "segment_ids": keras.Input((6,), dtype="int32", name="segment_ids"),
        "padding_mask": keras.Input((6,), dtype="int32", name="padding_mask"),
    }
    image = keras.Input((3,), name="image")
    model = mk.builders.fusion(
        [Modality("text", inputs, bert), Modality("image", image)],
        TASKS,
        fusion_dim=4,
        trunk_units=(),
        tower_units=(),
    )
    rng = np.random.default_rng(0)
    x = {
        "token_ids": rng.integers(1, 20, (4, 6)).astype("int32"),
        "segment_ids": np.zeros((4, 6), "int32"),
        "padding_mask": np.array([[1, 1, 1, 0, 0, 0]] * 4, "int32"),
        "image": rng.normal(size=(4, 3)).astype("float32"),
        "text_mask": np.ones(4, "float32"),
        "image_mask": np.ones(4, "float32"),
    }
    ref = _predict(model, x)
    x["token_ids"][:, 3:] = 0  # padded positions: ignored by attention and pooling
    np.testing.assert_allclose(_predict(model, x)["b"], ref["b"], rtol=1e-5, atol=1e-6)
    x["token_ids"][:, 0] = 5
    assert not np.allclose(_predict(model, x)["b"], ref["b"])
