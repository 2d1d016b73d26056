"""from_tfds on TFDS mock data (no network, no files)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import mtl_keras as mk
from mtl_keras.data import from_tfds

tfds = pytest.importorskip("tensorflow_datasets")


def _small(image):
    return tf.image.resize(tf.cast(image, tf.float32) / 255.0, (16, 16))


def test_celeb_a_attributes_as_binary_tasks():
    with tfds.testing.mock_data(num_examples=10):
        ds = from_tfds(
            "celeb_a",
            "train",
            {"smiling": "attributes/Smiling", "male": "attributes/Male"},
            batch_size=4,
            preprocess=_small,
            seed=0,
        )
        batches = list(ds)
    assert [int(x.shape[0]) for x, _ in batches] == [4, 4, 2]
    x, y = batches[0]
    assert x.shape == (4, 16, 16, 3) and x.dtype == tf.float32
    assert sorted(y) == ["male", "smiling"]
    for label in y.values():
        assert label.dtype == tf.float32 and set(np.unique(label.numpy())) <= {0.0, 1.0}


def test_mnist_callable_labels_and_fit():
    with tfds.testing.mock_data(num_examples=12):
        ds = from_tfds(
            "mnist",
            "test",
            {"digit": "label", "odd": lambda ex: ex["label"] % 2 == 1},
            features=lambda ex: tf.reshape(tf.cast(ex["image"], tf.float32) / 255.0, [784]),
            batch_size=6,
            cache=True,
            augment=lambda x: x + 0.0,
        )
        x, y = next(iter(ds))
        assert x.shape == (6, 784)
        assert y["digit"].dtype == tf.int32 and y["odd"].dtype == tf.float32
        np.testing.assert_array_equal(y["odd"].numpy(), y["digit"].numpy() % 2)
        assert ((y["digit"].numpy() >= 0) & (y["digit"].numpy() < 10)).all()

        keras.utils.set_random_seed(0)
        tasks = [mk.Multiclass("digit", 10), mk.Binary("odd")]
        model = mk.builders.shared_bottom(
            keras.Input((784,), name="x"), tasks, trunk_units=(8,), tower_units=(4,)
        )
        model.compile("adam")
        history = model.fit(ds, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_bad_key_and_empty_task_map():
    with tfds.testing.mock_data(num_examples=2):
        with pytest.raises(KeyError, match="attributes/Nope"):
            from_tfds("celeb_a", "train", {"t": "attributes/Nope"})
    with pytest.raises(ValueError, match="task_map"):
        from_tfds("mnist", "train", {})
