"""IMTL-G (Liu et al., ICLR 2021): equal projections of the update on every task."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from mtl_keras.weighting import _ops
from mtl_keras.weighting.base import GradientAggregator


@keras.saving.register_keras_serializable(package="mtl_keras")
class IMTLG(GradientAggregator):
    """Impartial Multi-Task Learning, gradient part (generalised form).

    Looks for `d = J^T w` whose projections on all unit task gradients are
    equal. With `G = J J^T` and `n = sqrt(diag(G))` (the gradient norms):
    `v = G^+ n`, `w = v / sum(v)` (`w = 0` when `|sum(v)| < 1e-12`). This is
    torchjd's generalisation, which handles linearly dependent rows through
    the pseudo-inverse (eigenvalues below `m * eps_float32 * max` are cut).

    Properties: weights sum to 1 and are invariant to scaling J (d is linear
    in J); `u_i . d` is the same for every unit gradient `u_i` when rows are
    independent; identical rows give that row.

    Reference: Liu et al., "Towards Impartial Multi-task Learning", ICLR 2021;
    Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024.

    Example:
    >>> from mtl_keras import weighting
    >>> strategy = weighting.IMTLG()
    """

    gramian_dtype = tf.float32

    def gramian_weights(self, gram: Any, num_columns: Any) -> Any:
        m = _ops.static_num_tasks(gram, "IMTLG")
        norms = tf.sqrt(tf.maximum(tf.cast(tf.linalg.diag_part(gram), tf.float64), 0.0))
        # torch.linalg.pinv's default cut-off on singular values of G.
        v = tf.linalg.matvec(_ops.psd_pinv(gram, m * _ops.EPS32), norms)
        total = tf.reduce_sum(v)
        small = tf.abs(total) < 1e-12
        weights = tf.where(small, tf.zeros_like(v), v / tf.where(small, tf.ones_like(total), total))
        return weights
