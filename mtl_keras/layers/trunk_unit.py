"""One unit of a convolutional or recurrent trunk (used by the MTAN builder)."""

from __future__ import annotations

from typing import Any

import keras

UNIT_KINDS = ("conv2d", "conv1d", "bilstm")


def check_momentum(value: Any, owner: str) -> float:
    """Validates a batch norm momentum in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{owner} `batch_norm_momentum` must be in [0, 1), got {value!r}.")
    return float(value)


@keras.saving.register_keras_serializable(package="mtl_keras")
class TrunkUnit(keras.layers.Layer):
    """Conv -> batch norm -> ReLU ("conv2d" / "conv1d", "same" padding), or a
    bidirectional LSTM returning sequences ("bilstm").

    The output keeps the spatial / time dimensions of the input and has
    `filters` channels (for "bilstm", `filters // 2` units per direction), so
    that units can be stacked and multiplied by attention masks.

    Args:
        kind: "conv2d" (images `(batch, H, W, C)`), "conv1d" or "bilstm"
            (sequences `(batch, steps, C)`).
        filters: output channels (even for "bilstm").
        kernel_size: convolution window (ignored for "bilstm").
        batch_norm_momentum: momentum of the batch norm's moving mean and
            variance (ignored for "bilstm"). The default 0.9 (PyTorch's, used
            by the original MTAN code) rather than Keras' 0.99: with 0.99 the
            inference-time statistics still lean on their initial values
            (mean 0, variance 1) and lag the weights after a few hundred
            steps, so a briefly trained model predicts near chance in
            inference mode although it fits well in training mode.

    Example:
    >>> import numpy as np
    >>> tuple(TrunkUnit("conv1d", 8)(np.zeros((2, 5, 3), "float32")).shape)
    (2, 5, 8)
    """

    def __init__(
        self,
        kind: str = "conv2d",
        filters: int = 16,
        kernel_size: int = 3,
        batch_norm_momentum: float = 0.9,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if kind not in UNIT_KINDS:
            raise ValueError(f"TrunkUnit `kind` must be one of {UNIT_KINDS}, got {kind!r}.")
        for value, what in ((filters, "filters"), (kernel_size, "kernel_size")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrunkUnit `{what}` must be a positive integer, got {value!r}.")
        if kind == "bilstm" and filters % 2:
            raise ValueError(
                f"TrunkUnit `filters` must be even for 'bilstm' (half per direction), got {filters}."
            )
        batch_norm_momentum = check_momentum(batch_norm_momentum, "TrunkUnit")
        self.kind = kind
        self.filters = filters
        self.kernel_size = kernel_size
        self.batch_norm_momentum = batch_norm_momentum
        if kind == "bilstm":
            self.inner = keras.layers.Bidirectional(
                keras.layers.LSTM(filters // 2, return_sequences=True), name="bilstm"
            )
            self.norm = None
        else:
            conv = keras.layers.Conv2D if kind == "conv2d" else keras.layers.Conv1D
            # No bias: batch norm right after provides the shift.
            self.inner = conv(filters, kernel_size, padding="same", use_bias=False, name="conv")
            self.norm = keras.layers.BatchNormalization(momentum=batch_norm_momentum, name="bn")

    def build(self, input_shape: Any) -> None:
        self.inner.build(tuple(input_shape))
        if self.norm is not None:
            self.norm.build(tuple(input_shape)[:-1] + (self.filters,))
        self.built = True

    def call(self, x: Any, training: bool | None = None) -> Any:
        x = self.inner(x, training=training)
        if self.norm is not None:
            x = keras.ops.relu(self.norm(x, training=training))
        return x

    def compute_output_shape(self, input_shape: Any) -> Any:
        return tuple(input_shape)[:-1] + (self.filters,)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "kind": self.kind,
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "batch_norm_momentum": self.batch_norm_momentum,
        }
