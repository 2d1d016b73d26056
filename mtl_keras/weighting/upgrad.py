"""UPGrad (Quinton & Rey, 2024): project every task gradient onto the dual cone."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from mtl_keras.weighting import _ops
from mtl_keras.weighting.base import GradientAggregator


@keras.saving.register_keras_serializable(package="mtl_keras")
class UPGrad(GradientAggregator):
    """Unconflicting Projection of Gradients.

    Each task gradient `g_i` (row i of the Jacobian J) is projected onto the
    dual cone `{x : J x >= 0}` of all rows, and the projections are averaged
    with preference weights `p` (default `1/m`):

    `d = sum_i p_i * pi_J(g_i)`, with `pi_J(J^T u) = J^T v(u)` and
    `v(u) = argmin_{v >= u} v^T G v` (Proposition 1 of the paper), `G = J J^T`.

    So `d = J^T w` with `w = sum_i v(p_i e_i)`. As in torchjd, the QP sees the
    Gramian normalised by `tr(G) = ||J||_F^2` (zero if below `norm_eps`) plus
    `reg_eps * I`; the weights are then applied to the un-normalised J, so
    the direction scales linearly with J. Properties: `J d >= 0` (never
    conflicts with any task), and for non-conflicting rows d is their
    weighted mean. The m QPs are solved exactly in float64 by block principal
    pivoting (`_ops.dual_cone_weights`), for any number of tasks.

    Reference: Quinton & Rey, "Jacobian Descent for Multi-Objective
    Optimization", 2024 (arXiv:2406.16232).

    Args:
        pref_vector: optional per-task preference weights (length = tasks);
            default `1/m` each.
        norm_eps: Gramian normalisation threshold (torchjd: 1e-4).
        reg_eps: ridge added to the normalised Gramian (torchjd: 1e-4).

    Example:
    >>> from mtl_keras import weighting
    >>> strategy = weighting.UPGrad()
    """

    gramian_dtype = tf.float32

    def __init__(
        self,
        pref_vector: list[float] | None = None,
        norm_eps: float = 1e-4,
        reg_eps: float = 1e-4,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.pref_vector = None if pref_vector is None else [float(p) for p in pref_vector]
        self.norm_eps = float(norm_eps)
        self.reg_eps = float(reg_eps)
        if self.norm_eps < 0 or self.reg_eps < 0:
            raise ValueError("UPGrad: `norm_eps` and `reg_eps` must be >= 0.")

    def gramian_weights(self, gram: Any, num_columns: Any) -> Any:
        m = _ops.static_num_tasks(gram, "UPGrad")
        pref = _ops.preference(self.pref_vector, m, "UPGrad")
        gram = _ops.normalize_gramian(gram, self.norm_eps)
        gram = tf.cast(gram, tf.float64) + self.reg_eps * tf.eye(m, dtype=tf.float64)
        solutions = _ops.dual_cone_weights(gram, tf.linalg.diag(pref))
        return tf.reduce_sum(solutions, axis=1)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "pref_vector": self.pref_vector,
            "norm_eps": self.norm_eps,
            "reg_eps": self.reg_eps,
        }
