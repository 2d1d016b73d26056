"""ConFIG (Liu et al., ICLR 2025): conflict-free update from unit gradients."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from mtl_keras.weighting import _ops
from mtl_keras.weighting.base import GradientAggregator


@keras.saving.register_keras_serializable(package="mtl_keras")
class ConFIG(GradientAggregator):
    """Conflict-Free Inverse Gradients.

    With unit task gradients `u_i = g_i / ||g_i||` (zero rows stay zero) and
    `U` their matrix, the direction is `d_u = U^+ p` (preference `p`,
    default all ones, as torchjd), normalised to `e = d_u / ||d_u||`, and
    rescaled by the sum of the projections: `d = (sum_i g_i . e) e`
    (Equation 2). `U^+ = U^T (U U^T)^+` keeps the pseudo-inverse on the
    small `(m, m)` Gram matrix, computed in float64 (a float32 Gramian's
    rounding noise would be mistaken for the tiny eigenvalues of linearly
    dependent rows; a training step uses the float32 one when all its
    normalised eigenvalues exceed `float32_gramian_above`); singular values
    below `max(m, n) * eps_float32 * max` are cut, as `torch.linalg.pinv`
    on float32 input, and at least those below `1e-5 * max` (XLA's eigh is
    only that accurate).

    Properties: with independent rows, `u_i . e` is the same for all tasks
    (equal cosine) and positive, so d conflicts with no task; d is linear
    under scaling of the rows (also on rank-deficient J, more tasks than
    parameters, scales 1e-10 ... 1e15); invariant to permuting rows.

    Reference: Liu et al., "ConFIG: Towards Conflict-free Training of Physics
    Informed Neural Networks", 2024 (arXiv:2408.11104).

    Args:
        pref_vector: optional per-task weights of `U^+ p` (default ones).

    Example:
    >>> from mtl_keras import weighting
    >>> strategy = weighting.ConFIG()
    """

    #: float64: in float32 the Gramian's rounding noise (~1e-8 lambda_max)
    #: would pass the pinv cut-off and be inverted whenever the task gradients
    #: are linearly dependent, collapsing d to noise.
    gramian_dtype = tf.float64
    #: the float32 Gramian when its normalised eigenvalues all exceed 1e-3:
    #: its rounding noise (~1e-7 of the trace) is then far from every
    #: cut-off, and the weights are as accurate as torchjd's float32 ones
    float32_gramian_above = 1e-3

    def __init__(self, pref_vector: list[float] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pref_vector = None if pref_vector is None else [float(p) for p in pref_vector]

    def gramian_weights(self, gram: Any, num_columns: Any) -> Any:
        m = _ops.static_num_tasks(gram, "ConFIG")
        if self.pref_vector is None:
            pref = tf.ones([m], tf.float64)
        elif len(self.pref_vector) != m:
            raise ValueError(
                f"ConFIG: `pref_vector` has {len(self.pref_vector)} entries for {m} tasks."
            )
        else:
            pref = tf.constant(self.pref_vector, tf.float64)
        # Everything from the Gramian G = J J^T (one pass over J): with row
        # norms n, the unit rows' Gramian is G / (n n^T); `best = U^T c =
        # J^T (c / n)`, `||best||^2 = c'^T G c'` and `sum_i g_i . best =
        # 1^T G c'` with `c' = c / n`.
        norms = tf.sqrt(tf.maximum(tf.linalg.diag_part(gram), 0.0))
        inv = tf.where(norms > 0, 1.0 / tf.where(norms > 0, norms, 1.0), 0.0)
        unit_gram = gram * inv[:, None] * inv[None, :]
        n = num_columns
        # torch.linalg.pinv's float32 cut-off, floored at 1e-10 (singular
        # values 1e-5): XLA's float64 eigh leaves null-space eigenvalues of
        # up to ~1e-12 (NumPy: 1e-16), which must not be inverted either.
        rtol = tf.maximum((tf.cast(tf.maximum(n, m), tf.float64) * _ops.EPS32) ** 2, 1e-10)
        coeffs = tf.linalg.matvec(_ops.psd_pinv(unit_gram, rtol), pref) * inv
        g_coeffs = tf.linalg.matvec(gram, coeffs)
        sq_norm = tf.maximum(tf.reduce_sum(coeffs * g_coeffs), 1e-24)
        # d = (sum_i g_i . e) e with e = best / max(||best||, 1e-12).
        return coeffs * (tf.reduce_sum(g_coeffs) / sq_norm)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "pref_vector": self.pref_vector}
