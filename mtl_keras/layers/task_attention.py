"""MTAN task-specific soft-attention mask (Liu, Johns & Davison, CVPR 2019)."""

from __future__ import annotations

from typing import Any

import keras

from mtl_keras.layers.trunk_unit import check_momentum


@keras.saving.register_keras_serializable(package="mtl_keras")
class TaskAttention(keras.layers.Layer):
    """Computes a task's soft attention mask over shared trunk features.

    mask = sigmoid(W2 . relu(BN(W1 . x))), where W1, W2 act on the channel
    axis only (1x1 convolutions for images and sequences), so the mask has
    the input's spatial / time shape and `channels` channels, with values in
    (0, 1). In MTAN `x` is the trunk's intermediate feature of a block,
    concatenated with the task's attended feature from the previous block;
    the mask is then multiplied with the block's output.

    Args:
        channels: channels of the mask (= channels of the features it gates).
        batch_norm: batch normalization between the two projections.
        batch_norm_momentum: momentum of its moving statistics; 0.9 by
            default, see `TrunkUnit`.

    Example:
    >>> import numpy as np
    >>> x = np.zeros((2, 4, 4, 16), "float32")
    >>> tuple(TaskAttention(8)(x).shape)
    (2, 4, 4, 8)
    """

    def __init__(
        self,
        channels: int,
        batch_norm: bool = True,
        batch_norm_momentum: float = 0.9,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(
                f"TaskAttention `channels` must be a positive integer, got {channels!r}."
            )
        self.channels = channels
        self.batch_norm = bool(batch_norm)
        self.batch_norm_momentum = check_momentum(batch_norm_momentum, "TaskAttention")
        self.proj = keras.layers.Dense(channels, use_bias=not batch_norm, name="proj")
        self.norm = (
            keras.layers.BatchNormalization(momentum=self.batch_norm_momentum, name="bn")
            if batch_norm
            else None
        )
        self.gate = keras.layers.Dense(channels, activation="sigmoid", name="gate")

    def build(self, input_shape: Any) -> None:
        shape = tuple(input_shape)
        self.proj.build(shape)
        hidden = shape[:-1] + (self.channels,)
        if self.norm is not None:
            self.norm.build(hidden)
        self.gate.build(hidden)
        self.built = True

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        h = self.proj(inputs)
        if self.norm is not None:
            h = self.norm(h, training=training)
        return self.gate(keras.ops.relu(h))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return tuple(input_shape)[:-1] + (self.channels,)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "channels": self.channels,
            "batch_norm": self.batch_norm,
            "batch_norm_momentum": self.batch_norm_momentum,
        }
