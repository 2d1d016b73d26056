"""DualProj: project the mean gradient onto the dual cone of the task gradients."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from mtl_keras.weighting import _ops
from mtl_keras.weighting.base import GradientAggregator


@keras.saving.register_keras_serializable(package="mtl_keras")
class DualProj(GradientAggregator):
    """Projection of the averaged gradient onto the dual cone of the rows.

    `d = pi_J(J^T p)`: the preference-weighted mean (default `p = 1/m`) is
    projected onto `{x : J x >= 0}`, i.e. `d = J^T v` with
    `v = argmin_{v >= p} v^T G v`, `G = J J^T` (Equation 11 of GEM). As in
    torchjd the QP uses `G / tr(G)` (zero if `tr(G) < norm_eps`) plus
    `reg_eps * I`, and v is applied to the un-normalised J, so d scales
    linearly with J. Properties: `J d >= 0`; d equals the mean when no task
    conflicts with it. The QP is solved exactly in float64 by block principal
    pivoting (`_ops.dual_cone_weights`), for any number of tasks.

    Reference: Lopez-Paz & Ranzato, "Gradient Episodic Memory for Continual
    Learning", NeurIPS 2017; torchjd's `DualProj`.

    Args:
        pref_vector: optional per-task weights of the combination (default
            `1/m` each).
        norm_eps: Gramian normalisation threshold (torchjd: 1e-4).
        reg_eps: ridge added to the normalised Gramian (torchjd: 1e-4).

    Example:
    >>> from mtl_keras import weighting
    >>> strategy = weighting.DualProj()
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
            raise ValueError("DualProj: `norm_eps` and `reg_eps` must be >= 0.")

    def gramian_weights(self, gram: Any, num_columns: Any) -> Any:
        m = _ops.static_num_tasks(gram, "DualProj")
        pref = _ops.preference(self.pref_vector, m, "DualProj")
        gram = _ops.normalize_gramian(gram, self.norm_eps)
        gram = tf.cast(gram, tf.float64) + self.reg_eps * tf.eye(m, dtype=tf.float64)
        weights = _ops.dual_cone_weights(gram, pref[:, None])[:, 0]
        return weights

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "pref_vector": self.pref_vector,
            "norm_eps": self.norm_eps,
            "reg_eps": self.reg_eps,
        }
