"""Feature arrays made ready for Keras's array adapter.

Keras's NumPy adapter rejects unicode/object arrays, but raw categorical
features are strings. `MultiTaskModel.fit/evaluate/predict` convert them
through `mtl_keras.contracts` (which also checks dtypes against the inputs);
helpers that call `predict` on an internal sub-model of a `MultiTaskModel`
(gate weights, fusion weights, feature importance) use `strings_to_tensors`.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

__all__ = ["strings_to_tensors"]


def strings_to_tensors(data: Any) -> Any:
    """NumPy string arrays in `data` -> `tf.string` tensors; the rest as is.

    Args:
        data: an array, or a dict/list/tuple of arrays (any nesting).

    Example:
    >>> import numpy as np
    >>> out = strings_to_tensors({"city": np.array(["a", "b"]), "age": np.ones(2)})
    >>> out["city"].dtype.name, type(out["age"]).__name__
    ('string', 'ndarray')
    """

    def convert(value: Any) -> Any:
        if isinstance(value, np.ndarray) and value.dtype.kind in "USO":
            return tf.constant(value.astype(str) if value.dtype.kind == "O" else value)
        return value

    if isinstance(data, (dict, list, tuple, np.ndarray)):
        return keras.tree.map_structure(convert, data)
    return data
