"""A stack of Dense layers used for trunks and task towers."""

from __future__ import annotations

from typing import Any, Sequence

import keras

from mtl_keras.layers._frozen import keep_frozen


@keras.saving.register_keras_serializable(package="mtl_keras")
class MLP(keras.layers.Layer):
    """Dense -> activation -> (batch norm) -> dropout, repeated.

    Args:
        units: widths of the hidden layers, e.g. `(256, 128)`; empty means
            identity.
        activation: activation of every hidden layer.
        dropout: dropout rate after each hidden layer.
        l2: L2 penalty on the kernels (added to `model.losses`).
        batch_norm: insert batch normalization before the activation.

    Example:
    >>> import numpy as np
    >>> tuple(MLP((8, 4))(np.zeros((2, 3), "float32")).shape)
    (2, 4)
    """

    def __init__(
        self,
        units: Sequence[int] = (),
        activation: str = "relu",
        dropout: float = 0.0,
        l2: float = 0.0,
        batch_norm: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        units = tuple(units or ())
        for u in units:
            if isinstance(u, bool) or not isinstance(u, int) or u < 1:
                raise ValueError(f"MLP `units` must be positive integers, got {units!r}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MLP `dropout` must be in [0, 1), got {dropout!r}.")
        if l2 < 0:
            raise ValueError(f"MLP `l2` must be >= 0, got {l2!r}.")
        self.units = units
        self.activation = activation
        self.dropout = float(dropout)
        self.l2 = float(l2)
        self.batch_norm = bool(batch_norm)
        reg = keras.regularizers.L2(self.l2) if self.l2 else None
        self.dense_layers = [
            keras.layers.Dense(u, kernel_regularizer=reg, name=f"dense_{i}")
            for i, u in enumerate(units)
        ]
        self.norm_layers = (
            [keras.layers.BatchNormalization(name=f"bn_{i}") for i in range(len(units))]
            if batch_norm
            else []
        )
        self.activation_layer = keras.layers.Activation(activation)
        self.dropout_layer = keras.layers.Dropout(self.dropout) if self.dropout else None

    def build(self, input_shape: Any) -> None:
        shape = tuple(input_shape)
        for i, dense in enumerate(self.dense_layers):
            dense.build(shape)
            shape = shape[:-1] + (dense.units,)
            if self.norm_layers:
                self.norm_layers[i].build(shape)
        keep_frozen(self)
        self.built = True

    def call(self, x: Any, training: bool | None = None) -> Any:
        for i, dense in enumerate(self.dense_layers):
            x = dense(x)
            if self.norm_layers:
                x = self.norm_layers[i](x, training=training)
            x = self.activation_layer(x)
            if self.dropout_layer is not None:
                x = self.dropout_layer(x, training=training)
        return x

    def compute_output_shape(self, input_shape: Any) -> Any:
        if not self.units:
            return tuple(input_shape)
        return tuple(input_shape)[:-1] + (self.units[-1],)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "units": list(self.units),
            "activation": self.activation,
            "dropout": self.dropout,
            "l2": self.l2,
            "batch_norm": self.batch_norm,
        }
