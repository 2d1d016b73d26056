"""A softmax gate: per-row weights over a set of experts."""

from __future__ import annotations

from typing import Any, Sequence

import keras

from mtl_keras.layers._frozen import keep_frozen
from mtl_keras.layers.mlp import MLP


@keras.saving.register_keras_serializable(package="mtl_keras")
class Gate(keras.layers.Layer):
    """Optional MLP, then Dense(num_experts) and a softmax over experts.

    Its output (one weight per expert, each row summing to 1) is what
    `mtl_keras.builders.gates.gate_model` / `gate_utilisation` read, keyed by
    `key` (`task`, or `f"{task}_level{level}"` when `level` is set; a gate
    without a task, such as PLE's shared gate, is `"shared"`).

    Args:
        num_experts: number of experts the gate weighs (>= 1).
        units: hidden widths before the softmax layer (empty: linear gate,
            as in the MMoE paper).
        activation: hidden activation.
        l2: L2 penalty on the kernels.
        task: the task this gate serves (for inspection), or None.
        level: the extraction level (PLE), or None.

    Input: `(batch, features)`. Output: `(batch, num_experts)`, float32.

    Example:
    >>> import numpy as np
    >>> w = Gate(3, task="click")(np.ones((2, 5), "float32"))
    >>> tuple(w.shape), bool(np.allclose(np.sum(w, axis=-1), 1.0))
    ((2, 3), True)
    """

    def __init__(
        self,
        num_experts: int,
        units: Sequence[int] = (),
        activation: str = "relu",
        l2: float = 0.0,
        task: str | None = None,
        level: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(num_experts, bool) or not isinstance(num_experts, int) or num_experts < 1:
            raise ValueError(f"Gate `num_experts` must be an integer >= 1, got {num_experts!r}.")
        self.num_experts = num_experts
        self.units = tuple(units or ())
        self.activation = activation
        self.l2 = float(l2)
        self.task = task
        self.level = level
        self.hidden = MLP(self.units, activation, 0.0, l2, name="hidden")
        reg = keras.regularizers.L2(self.l2) if self.l2 else None
        # float32 softmax: gate weights stay normalised under mixed precision.
        self.logits = keras.layers.Dense(
            num_experts, kernel_regularizer=reg, dtype="float32", name="logits"
        )

    @property
    def key(self) -> str:
        base = self.task if self.task is not None else "shared"
        return base if self.level is None else f"{base}_level{self.level}"

    def build(self, input_shape: Any) -> None:
        self.hidden.build(input_shape)
        self.logits.build(self.hidden.compute_output_shape(input_shape))
        keep_frozen(self)
        self.built = True

    def call(self, x: Any, training: bool | None = None) -> Any:
        return keras.ops.softmax(self.logits(self.hidden(x, training=training)), axis=-1)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (tuple(input_shape)[0], self.num_experts)

    def compute_output_spec(self, x: Any, training: bool | None = None) -> Any:
        return keras.KerasTensor(self.compute_output_shape(x.shape), dtype="float32")

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_experts": self.num_experts,
            "units": list(self.units),
            "activation": self.activation,
            "l2": self.l2,
            "task": self.task,
            "level": self.level,
        }
