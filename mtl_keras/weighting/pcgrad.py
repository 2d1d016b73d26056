"""PCGrad (Yu et al., NeurIPS 2020): project away conflicting components."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from mtl_keras.tasks import Task
from mtl_keras.weighting import _ops
from mtl_keras.weighting.base import GradientAggregator


@keras.saving.register_keras_serializable(package="mtl_keras")
class PCGrad(GradientAggregator):
    """Projecting Conflicting Gradients ("gradient surgery").

    For each task i, starting from `g_i^PC = g_i`, visit the other tasks j in
    random order and, when `g_i^PC . g_j < 0`, remove the conflicting part:
    `g_i^PC -= (g_i^PC . g_j) / ||g_j||^2 * g_j`. The direction is the sum
    (not the mean, as in the paper and torchjd) `d = sum_i g_i^PC`. Computed
    on the Gramian: `g_i^PC = sum_k C_ik g_k` and `d = J^T (1^T C)`.

    Properties: linear in J (scaling J scales d); two tasks give the same
    result in any order; non-conflicting rows give their sum. Unlike
    UPGrad/MGDA, d may still conflict with a task when there are 3+ tasks.

    Reference: Yu et al., "Gradient Surgery for Multi-Task Learning",
    NeurIPS 2020 (arXiv:2001.06782), Algorithm 1.

    Args:
        random_order: visit the other tasks in a fresh random order at every
            step (the paper; torchjd). False visits them in task order, which
            is deterministic.
        seed: optional seed of the visiting order.

    Example:
    >>> from mtl_keras import weighting
    >>> strategy = weighting.PCGrad(seed=0)
    """

    gramian_dtype = tf.float32

    def __init__(self, random_order: bool = True, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.random_order = bool(random_order)
        self.seed = seed

    def build_state(self, tasks: list[Task]) -> None:
        self.rng_state = _ops.make_rng_state(self, self.seed, "rng_state")

    def gramian_weights(self, gram: Any, num_columns: Any) -> Any:
        m = _ops.static_num_tasks(gram, "PCGrad")
        keys = None
        if self.random_order:
            if not hasattr(self, "rng_state"):  # used outside a model
                self.build_state([])
            keys = _ops.draw_uniform(self.rng_state, (m, m))
        orders = _ops.visiting_orders(m, keys)
        diag = tf.linalg.diag_part(gram)
        # The m projection walks are independent (walk i only changes row i
        # of `coeffs`), so step k runs for every task at once.
        coeffs = tf.eye(m, dtype=gram.dtype)  # row i: g_i^PC = coeffs[i] @ J
        rows = tf.range(m)
        for k in range(m):
            j = orders[:, k]
            inner = tf.reduce_sum(tf.gather(gram, j) * coeffs, axis=1)  # g_i^PC . g_j
            gjj = tf.gather(diag, j)
            conflict = tf.logical_and(tf.not_equal(j, rows), inner < 0.0)
            # inner < 0 implies g_j != 0, so gjj > 0 wherever it is used.
            step = tf.where(conflict, -inner / tf.where(conflict, gjj, 1.0), 0.0)
            coeffs = coeffs + step[:, None] * tf.one_hot(j, m, dtype=gram.dtype)
        return tf.reduce_sum(coeffs, axis=0)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "random_order": self.random_order, "seed": self.seed}
