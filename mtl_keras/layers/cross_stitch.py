"""Cross-stitch unit (Misra et al., CVPR 2016): learned linear mixing of
the activations of parallel task columns."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="mtl_keras")
class CrossStitch(keras.layers.Layer):
    """Mixes T same-shaped inputs: `out_i = sum_j alpha[i, j] * x_j`.

    `alpha` is a learned T x T matrix initialised to `self_weight` on the
    diagonal and `(1 - self_weight) / (T - 1)` elsewhere (the paper's
    0.9 / 0.1 initialisation keeps each column mostly its own at first, so
    each task starts close to an independent network). With one input,
    `alpha` is `[[1.0]]`.

    Args:
        self_weight: initial diagonal value, in [0, 1].

    Call on a list of T tensors of identical shape; returns a list of T.

    Example:
    >>> import numpy as np
    >>> a, b = np.ones((1, 2), "float32"), np.zeros((1, 2), "float32")
    >>> out = CrossStitch(0.9)([a, b])
    >>> [np.asarray(o, "float64").round(3).tolist() for o in out]
    [[[0.9, 0.9]], [[0.1, 0.1]]]
    """

    def __init__(self, self_weight: float = 0.9, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(self_weight, bool) or not 0.0 <= float(self_weight) <= 1.0:
            raise ValueError(f"CrossStitch `self_weight` must be in [0, 1], got {self_weight!r}.")
        self.self_weight = float(self_weight)

    @staticmethod
    def initial_matrix(num_tasks: int, self_weight: float) -> np.ndarray:
        """The initial mixing matrix for `num_tasks` columns."""
        if num_tasks == 1:
            return np.ones((1, 1), "float32")
        other = (1.0 - self_weight) / (num_tasks - 1)
        alpha = np.full((num_tasks, num_tasks), other, "float32")
        np.fill_diagonal(alpha, self_weight)
        return alpha

    def build(self, input_shape: Any) -> None:
        if (
            not isinstance(input_shape, (list, tuple))
            or not input_shape
            or not isinstance(input_shape[0], (list, tuple))
        ):
            raise ValueError("CrossStitch must be called on a list of tensors (one per task).")
        shapes = {tuple(s[1:]) for s in input_shape}
        if len(shapes) != 1:
            raise ValueError(
                f"CrossStitch inputs must all have the same shape, got {list(input_shape)}."
            )
        self.num_tasks = len(input_shape)
        init = self.initial_matrix(self.num_tasks, self.self_weight)
        self.alpha = self.add_weight(
            name="alpha",
            shape=(self.num_tasks, self.num_tasks),
            initializer=lambda shape, dtype=None: ops.convert_to_tensor(init, dtype=dtype),
        )
        self.built = True

    def call(self, inputs: Any) -> list[Any]:
        stacked = ops.stack(list(inputs), axis=0)  # (T, batch, ...)
        alpha = ops.cast(self.alpha, stacked.dtype)
        flat = ops.reshape(stacked, (self.num_tasks, -1))
        mixed = ops.reshape(ops.matmul(alpha, flat), ops.shape(stacked))
        return [mixed[i] for i in range(self.num_tasks)]

    def compute_output_shape(self, input_shape: Any) -> Any:
        return [tuple(s) for s in input_shape]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "self_weight": self.self_weight}
