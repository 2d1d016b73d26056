"""One MLP per modality over stacked modality tokens (late fusion)."""

from __future__ import annotations

from typing import Any, Sequence

import keras
from keras import ops

from mtl_keras.layers.mlp import MLP


@keras.saving.register_keras_serializable(package="mtl_keras")
class ModalityTowers(keras.layers.Layer):
    """`(batch, M, width)` -> `(batch, M, units[-1])`, modality `k` through its own MLP.

    Used by late fusion: each task processes every modality separately up
    to its output layer, and the per-modality results are mixed by
    `FusionWeights(mode="static")` just before the (linear) task head, i.e.
    the task's logits are a weighted mean of per-modality logits.

    Args:
        num_modalities: number of modality tokens `M`.
        units: hidden widths of each MLP (non-empty).
        activation: hidden activation.
        dropout: dropout rate.
        l2: L2 penalty on the kernels.

    Example:
    >>> import numpy as np
    >>> towers = ModalityTowers(2, (4,))
    >>> tuple(towers(np.ones((3, 2, 5), "float32")).shape)
    (3, 2, 4)
    """

    def __init__(
        self,
        num_modalities: int,
        units: Sequence[int],
        activation: str = "relu",
        dropout: float = 0.0,
        l2: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (
            isinstance(num_modalities, bool)
            or not isinstance(num_modalities, int)
            or (num_modalities < 1)
        ):
            raise ValueError(
                f"ModalityTowers `num_modalities` must be an integer >= 1, got {num_modalities!r}."
            )
        self.units = [int(u) for u in units]
        if not self.units:
            raise ValueError("ModalityTowers `units` must not be empty.")
        self.num_modalities = num_modalities
        self.activation = activation
        self.dropout = float(dropout)
        self.l2 = float(l2)
        self.towers = [
            MLP(self.units, activation, dropout, l2, name=f"modality_{k}")
            for k in range(num_modalities)
        ]

    def build(self, input_shape: Any) -> None:
        for tower in self.towers:
            tower.build((input_shape[0], input_shape[-1]))
        self.built = True

    def call(self, tokens: Any, training: bool | None = None) -> Any:
        return ops.stack(
            [tower(tokens[:, k], training=training) for k, tower in enumerate(self.towers)],
            axis=1,
        )

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (input_shape[0], self.num_modalities, self.units[-1])

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_modalities": self.num_modalities,
            "units": self.units,
            "activation": self.activation,
            "dropout": self.dropout,
            "l2": self.l2,
        }
