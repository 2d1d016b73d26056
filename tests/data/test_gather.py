"""`gather_batches` / `from_arrays`: same batches as slicing, every row once per epoch."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mtl_keras.data import from_arrays
from mtl_keras.data.gather import gather_batches


def test_unshuffled_batches_equal_slice_batches():
    data = {"s": np.array(list("abcdefg"), dtype=object), "x": np.arange(14.0).reshape(7, 2)}
    got = list(gather_batches(data, 7, batch_size=3))
    ref = list(tf.data.Dataset.from_tensor_slices(data).batch(3))
    assert len(got) == len(ref) == 3
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(g["s"].numpy(), r["s"].numpy())
        np.testing.assert_array_equal(g["x"].numpy(), r["x"].numpy())
    assert [b["x"].shape[0] for b in gather_batches(data, 7, 3, drop_remainder=True)] == [3, 3]


def test_shuffled_epochs_keep_rows_aligned_and_reshuffle():
    x = np.arange(100)
    ds = from_arrays({"x": x, "s": x.astype(str)}, {"y": x * 2.0}, batch_size=16, shuffle=True,
                     seed=3)  # fmt: skip
    epochs = []
    for _ in range(2):
        seen = []
        for features, labels in ds:
            np.testing.assert_array_equal(labels["y"].numpy(), features["x"].numpy() * 2.0)
            np.testing.assert_array_equal(features["s"].numpy().astype(str),
                                          features["x"].numpy().astype(str))  # fmt: skip
            seen.extend(features["x"].numpy().tolist())
        assert sorted(seen) == list(range(100))
        epochs.append(seen)
    assert epochs[0] != epochs[1] and epochs[0] != list(range(100))


def test_ragged_rows_fall_back_to_slicing():
    rows = np.empty(3, dtype=object)
    rows[:] = [[1], [2, 3], [4]]
    ds = gather_batches(tf.ragged.constant(list(rows)), 3, batch_size=2)
    assert [b.shape[0] for b in ds] == [2, 1]
