"""Pooling of a sequence (or image) feature map into one vector per row."""

from __future__ import annotations

from typing import Any

import keras

POOLING_MODES = ("avg", "max", "cls")


@keras.saving.register_keras_serializable(package="mtl_keras")
class SequencePooling(keras.layers.Layer):
    """Pools `(batch, steps, features)` (or `(batch, H, W, features)`) to
    `(batch, features)`, ignoring padding.

    Call it on `x` or on `[x, padding_mask]` where `padding_mask` is
    `(batch, steps)`, non-zero for real tokens (keras-hub's `padding_mask`).
    Padded steps do not enter the mean or the max. Rows without any real
    token pool to zeros.

    Args:
        mode: "avg" (masked mean), "max" (masked max) or "cls" (the first
            step, e.g. BERT's [CLS] token; sequences only).

    Example:
    >>> import numpy as np
    >>> x = np.array([[[1.0], [3.0], [100.0]]], "float32")
    >>> float(SequencePooling("avg")([x, np.array([[1, 1, 0]])])[0, 0])
    2.0
    """

    def __init__(self, mode: str = "avg", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in POOLING_MODES:
            raise ValueError(
                f"SequencePooling `mode` must be one of {POOLING_MODES}, got {mode!r}."
            )
        self.mode = mode

    def call(self, inputs: Any) -> Any:
        ops = keras.ops
        x, mask = (inputs[0], inputs[1]) if isinstance(inputs, (list, tuple)) else (inputs, None)
        x = ops.cast(x, "float32") if x.dtype != "float32" else x
        if self.mode == "cls":
            if len(x.shape) != 3:
                raise ValueError("SequencePooling('cls') needs (batch, steps, features) inputs.")
            return x[:, 0, :]
        if len(x.shape) == 4:  # images: treat H*W positions as steps
            x = ops.reshape(x, (ops.shape(x)[0], -1, x.shape[-1]))
            mask = None
        if mask is None:
            return ops.mean(x, axis=1) if self.mode == "avg" else ops.max(x, axis=1)
        m = ops.expand_dims(ops.cast(ops.not_equal(mask, 0), x.dtype), -1)
        if self.mode == "avg":
            total = ops.sum(x * m, axis=1)
            return ops.divide_no_nan(total, ops.sum(m, axis=1))
        # Masked max: padded steps get a very low value; all-padding rows -> 0.
        low = ops.min(x) - 1e4
        pooled = ops.max(ops.where(m > 0, x, low), axis=1)
        return ops.where(ops.sum(m, axis=1) > 0, pooled, ops.zeros_like(pooled))

    def compute_output_shape(self, input_shape: Any) -> Any:
        # `[x, padding_mask]` or `(x, padding_mask)`: a nest of shapes.
        nested = isinstance(input_shape, (list, tuple)) and isinstance(
            input_shape[0], (list, tuple)
        )
        shape = input_shape[0] if nested else input_shape
        return (shape[0], shape[-1])

    def compute_output_spec(self, inputs: Any) -> Any:
        x = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        return keras.KerasTensor(self.compute_output_shape(x.shape), dtype="float32")

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}
