"""Concatenation fusion of modality tokens with their presence mask."""

from __future__ import annotations

from typing import Any, Sequence

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mtl_keras")
class ModalityConcat(keras.layers.Layer):
    """`[tokens (batch, M, width), mask (batch, M)]` -> `(batch, M * width + M)`.

    The tokens of missing modalities are already 0 (`ModalityStack`); the
    mask is appended so the next layer can tell "missing" from "present but
    all zero" and shift its bias accordingly.

    Example:
    >>> import numpy as np
    >>> tokens = np.ones((1, 2, 3), "float32")
    >>> np.asarray(ModalityConcat()([tokens, np.array([[1, 0]], "float32")])).tolist()
    [[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]]
    """

    def call(self, inputs: Sequence[Any]) -> Any:
        tokens, mask = inputs
        m, width = tokens.shape[1], tokens.shape[2]
        flat = ops.reshape(tokens, (-1, m * width))
        return ops.concatenate([flat, ops.cast(mask, flat.dtype)], axis=-1)

    def compute_output_shape(self, input_shape: Any) -> Any:
        tokens_shape = tuple(input_shape[0])
        return (tokens_shape[0], tokens_shape[1] * tokens_shape[2] + tokens_shape[1])

    def get_config(self) -> dict[str, Any]:
        return super().get_config()
