"""The one home of the library's NaN/Inf checks (host arrays and step tensors).

`mtl_keras.contracts` (training, evaluation, prediction) and
`mtl_keras.export.requests` (serving requests) both ask the same questions:
which values are not finite, how many, where is the first. Each caller words
its own message; the checks live here.

Example:
>>> import numpy as np
>>> bad = nonfinite_mask(np.array([1.0, np.nan, np.inf]))
>>> bad.tolist(), first_bad(np.array([1.0, np.nan, np.inf]), bad)[:2]
([False, True, True], (2, (1,)))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf


def nonfinite_mask(array: np.ndarray) -> np.ndarray:
    """Boolean mask of NaN/±Inf entries; all False for non-float arrays.

    Args:
        array: any NumPy array.

    Example:
    >>> nonfinite_mask(np.array([1, 2])).tolist()
    [False, False]
    """
    array = np.asarray(array)
    if array.dtype.kind not in "fc":
        return np.zeros(array.shape, bool)
    return ~np.isfinite(array)


def first_bad(array: np.ndarray, bad: np.ndarray) -> tuple[int, tuple[int, ...], Any]:
    """(number of bad entries, index of the first, its value) for a mask `bad`.

    Args:
        array: the checked array.
        bad: a boolean mask of the same shape with at least one True.

    Example:
    >>> first_bad(np.array([[1.0, np.inf]]), np.array([[False, True]]))
    (1, (0, 1), np.float64(inf))
    """
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    return int(bad.sum()), index, array[index]


def _values(tensor: Any) -> Any:
    # A sparse gradient (tf.IndexedSlices, from an Embedding) is checked on
    # its values: converting it to a dense tensor would cost a
    # (vocabulary, dim) buffer and print TensorFlow's "Converting
    # IndexedSlices ... to a dense representation" warning.
    return tensor.values if isinstance(tensor, tf.IndexedSlices) else tensor


def count_nonfinite(tensor: Any) -> Any:
    """Number of NaN/±Inf entries of a tensor (float32 scalar; 0 if not float).

    Args:
        tensor: a dense tensor or a `tf.IndexedSlices`.

    Example:
    >>> float(count_nonfinite(tf.constant([1.0, float("nan")])))
    1.0
    """
    values = _values(tensor)
    if not values.dtype.is_floating:
        return tf.constant(0.0)
    return tf.reduce_sum(tf.cast(~tf.math.is_finite(values), tf.float32))


def any_nonfinite(tensors: Sequence[Any]) -> Any:
    """1.0 if any of `tensors` (None skipped) has a NaN/±Inf entry, else 0.0.

    One cheap reduction: `x * 0` is 0 for finite x and NaN otherwise.

    Args:
        tensors: dense tensors, `tf.IndexedSlices` or None.

    Example:
    >>> float(any_nonfinite([tf.ones(2), None, tf.constant([float("inf")])]))
    1.0
    """
    sums = [tf.reduce_sum(tf.cast(_values(t), tf.float32) * 0.0) for t in tensors if t is not None]
    if not sums:
        return tf.constant(0.0)
    return tf.cast(~tf.math.is_finite(tf.add_n(sums)), tf.float32)
