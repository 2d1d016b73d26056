"""Combines stacked expert outputs with per-row gate weights."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mtl_keras")
class ExpertMixture(keras.layers.Layer):
    """`sum_e weights[:, e] * experts[:, e, :]`.

    Call on `[experts, weights]` with experts `(batch, num_experts, width)`
    (e.g. from `Experts`, or several concatenated on axis 1) and weights
    `(batch, num_experts)` (from a `Gate`). Output: `(batch, width)`.

    Example:
    >>> import numpy as np
    >>> experts = np.arange(12, dtype="float32").reshape(1, 3, 4)
    >>> weights = np.array([[0.0, 1.0, 0.0]], "float32")
    >>> np.asarray(ExpertMixture()([experts, weights])).tolist()
    [[4.0, 5.0, 6.0, 7.0]]
    """

    def call(self, inputs: Any) -> Any:
        experts, weights = inputs
        weights = ops.cast(weights, experts.dtype)
        return ops.sum(experts * ops.expand_dims(weights, -1), axis=1)

    def compute_output_shape(self, input_shape: Any) -> Any:
        experts_shape, _ = input_shape
        return (experts_shape[0], experts_shape[2])

    def get_config(self) -> dict[str, Any]:
        return super().get_config()
