"""Aligned-MTL (Senushkin et al., CVPR 2023): align the principal components."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from mtl_keras.weighting import _ops
from mtl_keras.weighting.base import GradientAggregator

_SCALE_MODES = ("min", "median", "rmse")


@keras.saving.register_keras_serializable(package="mtl_keras")
class AlignedMTL(GradientAggregator):
    """Aligned-MTL: make the task gradients orthogonal with equal norms.

    With the eigendecomposition `G = J J^T = V diag(l) V^T` restricted to the
    rank r eigenvalues above `max(l) * m * eps_float32`, the balance
    transformation is `B = sqrt(s) V diag(l^-1/2) V^T` and the direction
    `d = J^T B p` (preference `p`, default `1/m`). The scale s is the
    smallest kept eigenvalue (`"min"`, default, as torchjd), their lower
    median (`"median"`) or their mean (`"rmse"`, the original code). If
    `G = 0`, B is the identity (d is the weighted mean).

    Properties: the rows of `B J` (the aligned gradients) are orthogonal
    with equal norms `sqrt(s)`; d is linear in J; invariant to permuting
    rows together with `p`.

    Reference: Senushkin et al., "Independent Component Alignment for
    Multi-Task Learning", CVPR 2023, Algorithm 1.

    Args:
        pref_vector: optional per-task preference weights (default `1/m`).
        scale_mode: "min", "median" or "rmse".

    Example:
    >>> from mtl_keras import weighting
    >>> strategy = weighting.AlignedMTL(scale_mode="rmse")
    """

    gramian_dtype = tf.float32

    def __init__(
        self,
        pref_vector: list[float] | None = None,
        scale_mode: str = "min",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if scale_mode not in _SCALE_MODES:
            raise ValueError(
                f"AlignedMTL: `scale_mode` must be one of {_SCALE_MODES}, got {scale_mode!r}."
            )
        self.pref_vector = None if pref_vector is None else [float(p) for p in pref_vector]
        self.scale_mode = scale_mode

    def gramian_weights(self, gram: Any, num_columns: Any) -> Any:
        m = _ops.static_num_tasks(gram, "AlignedMTL")
        pref = _ops.preference(self.pref_vector, m, "AlignedMTL")
        gram = tf.cast(gram, tf.float64)
        lam, vec = tf.linalg.eigh(0.5 * (gram + tf.transpose(gram)))
        keep = lam > tf.reduce_max(lam) * m * _ops.EPS32
        rank = tf.reduce_sum(tf.cast(keep, tf.int32))
        safe = tf.where(keep, lam, tf.ones_like(lam))
        inv_sqrt = tf.where(keep, 1.0 / tf.sqrt(safe), tf.zeros_like(lam))
        big = tf.constant(float("inf"), tf.float64)
        ascending = tf.sort(tf.where(keep, lam, big))  # kept eigenvalues first
        if self.scale_mode == "min":
            scale = ascending[0]
        elif self.scale_mode == "median":
            scale = tf.gather(ascending, tf.maximum(rank - 1, 0) // 2)
        else:
            scale = tf.reduce_sum(tf.where(keep, lam, tf.zeros_like(lam))) / tf.cast(
                tf.maximum(rank, 1), tf.float64
            )
        balance = tf.sqrt(tf.where(rank > 0, scale, tf.ones_like(scale))) * tf.matmul(
            vec * inv_sqrt[None, :], vec, transpose_b=True
        )
        balance = tf.where(rank > 0, balance, tf.eye(m, dtype=tf.float64))
        return tf.linalg.matvec(balance, pref)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "pref_vector": self.pref_vector,
            "scale_mode": self.scale_mode,
        }
