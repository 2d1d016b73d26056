"""Per-task weights over the modalities present in each row."""

from __future__ import annotations

from typing import Any, Sequence

import keras
from keras import ops

MODES = ("attention", "static")


def masked_softmax(scores: Any, mask: Any) -> Any:
    """Softmax over the entries where `mask > 0`; 0 elsewhere, and an all-zero
    row when nothing is present (no NaN from 0/0)."""
    present = ops.cast(mask, scores.dtype) > 0
    scores = ops.where(present, scores, ops.full_like(scores, -1e9))
    scores = scores - ops.max(scores, axis=-1, keepdims=True)
    weights = ops.where(present, ops.exp(scores), ops.zeros_like(scores))
    total = ops.sum(weights, axis=-1, keepdims=True)
    return weights / ops.maximum(total, 1e-12)


@keras.saving.register_keras_serializable(package="mtl_keras")
class FusionWeights(keras.layers.Layer):
    """How much one task relies on each modality, per row.

    - "attention": score_k = q . tanh(W token_k + b), with one query `q` per
      task (additive attention, Bahdanau-style): the weights depend on the
      row's content, e.g. a blurry image gets less weight. `W`, `b` and `q`
      do not depend on the number of modalities, so the weights over a
      subset of modalities are exactly the softmax over that subset.
    - "static": one learned logit per modality (late fusion: a fixed
      per-task trust in each modality), renormalised over the present ones.

    Either way the softmax runs over the modalities present in the row only
    (mask > 0); missing ones get weight exactly 0. The output is what
    `mtl_keras.builders.fusion.fusion_weights` reads and
    `TaskTensorBoard` logs as `fusion/<task>/<modality>`.

    Args:
        mode: "attention" or "static".
        units: width of the attention projection ("attention" only).
        num_modalities: number of modalities ("static" only; needed to size
            the logits).
        task: the task these weights serve (for inspection).
        modalities: modality names in token order (for inspection/logging).
        l2: L2 penalty on the attention kernel.

    Input: `[tokens (batch, M, width), mask (batch, M)]`.
    Output: `(batch, M)`, float32, each row summing to 1 over present
    modalities (0 for a row with no modality present).

    Example:
    >>> import numpy as np
    >>> layer = FusionWeights("attention", units=4, task="price")
    >>> tokens = np.random.default_rng(0).normal(size=(2, 3, 5)).astype("float32")
    >>> w = np.asarray(layer([tokens, np.array([[1, 1, 1], [1, 0, 1]], "float32")]))
    >>> w.sum(axis=-1).round(5).tolist(), float(w[1, 1])
    ([1.0, 1.0], 0.0)
    """

    def __init__(
        self,
        mode: str = "attention",
        units: int = 32,
        num_modalities: int | None = None,
        task: str | None = None,
        modalities: Sequence[str] | None = None,
        l2: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"FusionWeights `mode` must be one of {MODES}, got {mode!r}.")
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(f"FusionWeights `units` must be a positive integer, got {units!r}.")
        if mode == "static" and (
            isinstance(num_modalities, bool)
            or not isinstance(num_modalities, int)
            or num_modalities < 1
        ):
            raise ValueError(
                f"FusionWeights(mode='static') needs `num_modalities` >= 1, got {num_modalities!r}."
            )
        self.mode = mode
        self.units = units
        self.num_modalities = num_modalities
        self.task = task
        self.modalities = list(modalities) if modalities is not None else None
        self.l2 = float(l2)

    @property
    def key(self) -> str:
        return self.task if self.task is not None else self.name

    def build(self, input_shape: Any) -> None:
        tokens_shape = tuple(input_shape[0])
        if self.mode == "attention":
            reg = keras.regularizers.L2(self.l2) if self.l2 else None
            self.kernel = self.add_weight(
                name="kernel",
                shape=(tokens_shape[-1], self.units),
                initializer="glorot_uniform",
                regularizer=reg,
            )
            self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
            self.query = self.add_weight(
                name="query", shape=(self.units,), initializer="glorot_uniform"
            )
        else:
            if tokens_shape[1] is not None and tokens_shape[1] != self.num_modalities:
                raise ValueError(
                    f"FusionWeights(task={self.task!r}): num_modalities="
                    f"{self.num_modalities} but the tokens have {tokens_shape[1]} modalities."
                )
            self.logits = self.add_weight(
                name="logits", shape=(self.num_modalities,), initializer="zeros"
            )

    def call(self, inputs: Sequence[Any]) -> Any:
        tokens, mask = inputs
        tokens = ops.cast(tokens, "float32")
        if self.mode == "attention":
            kernel, bias = ops.cast(self.kernel, "float32"), ops.cast(self.bias, "float32")
            hidden = ops.tanh(ops.matmul(tokens, kernel) + bias)
            scores = ops.sum(hidden * ops.cast(self.query, "float32"), axis=-1)
        else:
            scores = ops.zeros_like(tokens[..., 0]) + ops.cast(self.logits, "float32")
        return masked_softmax(scores, ops.cast(mask, "float32"))

    def compute_output_shape(self, input_shape: Any) -> Any:
        tokens_shape = tuple(input_shape[0])
        return (tokens_shape[0], tokens_shape[1])

    def compute_output_spec(self, inputs: Any) -> Any:
        return keras.KerasTensor(self.compute_output_shape([inputs[0].shape]), dtype="float32")

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "mode": self.mode,
            "units": self.units,
            "num_modalities": self.num_modalities,
            "task": self.task,
            "modalities": self.modalities,
            "l2": self.l2,
        }
