"""A bank of independent expert MLPs applied to the same input."""

from __future__ import annotations

from typing import Any, Sequence

import keras
from keras import ops

from mtl_keras.layers._frozen import keep_frozen
from mtl_keras.layers.mlp import MLP


@keras.saving.register_keras_serializable(package="mtl_keras")
class Experts(keras.layers.Layer):
    """`num_experts` MLPs of identical shape on one input, stacked.

    Used by mixture-of-experts builders (MMoE, PLE): a `Gate` produces per-row
    weights over the experts and an `ExpertMixture` combines them.

    Args:
        num_experts: number of experts (>= 1).
        units: hidden widths of each expert MLP (non-empty); the last one is
            the expert output width.
        activation: hidden activation.
        dropout: dropout rate after each hidden layer.
        l2: L2 penalty on the expert kernels.
        batch_norm: batch normalization inside each expert.

    Input: `(batch, features)`. Output: `(batch, num_experts, units[-1])`.

    Example:
    >>> import numpy as np
    >>> tuple(Experts(3, (8, 4))(np.zeros((2, 5), "float32")).shape)
    (2, 3, 4)
    """

    def __init__(
        self,
        num_experts: int,
        units: Sequence[int] = (64,),
        activation: str = "relu",
        dropout: float = 0.0,
        l2: float = 0.0,
        batch_norm: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(num_experts, bool) or not isinstance(num_experts, int) or num_experts < 1:
            raise ValueError(f"Experts `num_experts` must be an integer >= 1, got {num_experts!r}.")
        units = tuple(units or ())
        if not units:
            raise ValueError("Experts `units` must not be empty (it sets the expert width).")
        self.num_experts = num_experts
        self.units = units
        self.activation = activation
        self.dropout = float(dropout)
        self.l2 = float(l2)
        self.batch_norm = bool(batch_norm)
        self.experts = [
            MLP(units, activation, dropout, l2, batch_norm, name=f"expert_{i}")
            for i in range(num_experts)
        ]

    def build(self, input_shape: Any) -> None:
        for expert in self.experts:
            expert.build(input_shape)
        keep_frozen(self)
        self.built = True

    def call(self, x: Any, training: bool | None = None) -> Any:
        return ops.stack([expert(x, training=training) for expert in self.experts], axis=1)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (tuple(input_shape)[0], self.num_experts, self.units[-1])

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_experts": self.num_experts,
            "units": list(self.units),
            "activation": self.activation,
            "dropout": self.dropout,
            "l2": self.l2,
            "batch_norm": self.batch_norm,
        }
