"""MGDA: the min-norm element of the convex hull of the task gradients."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from mtl_keras.weighting import _ops
from mtl_keras.weighting.base import GradientAggregator


@keras.saving.register_keras_serializable(package="mtl_keras")
class MGDA(GradientAggregator):
    """Multiple-Gradient Descent Algorithm.

    `d = J^T a` with `a = argmin_{a in simplex} a^T G a`, `G = J J^T`: the
    minimum-norm convex combination of the task gradients. Solved on the
    Gramian with the Frank-Wolfe loop of Sener & Koltun (Algorithm 2), as in
    torchjd: start at `a = 1/m`; each step moves towards the vertex
    `t = argmin (G a)` with the exact line-search step gamma and stops once
    `gamma < epsilon` or after `max_iters` steps. The loop is a
    `tf.while_loop`, so it compiles with XLA.

    Properties: `J d >= ||d||^2 >= 0` at the optimum (no task is hurt), the
    weights are invariant to scaling J (d is linear in J), and d is zero
    when some convex combination of the gradients vanishes (Pareto
    stationarity). Identical rows give that row.

    References: Désidéri, "Multiple-gradient descent algorithm (MGDA) for
    multiobjective optimization", 2012; Sener & Koltun, "Multi-Task Learning
    as Multi-Objective Optimization", NeurIPS 2018.

    Args:
        epsilon: stop when the Frank-Wolfe step is below this (torchjd: 1e-3).
        max_iters: maximum number of Frank-Wolfe steps (torchjd: 100).

    Example:
    >>> from mtl_keras import weighting
    >>> strategy = weighting.MGDA(max_iters=250)
    """

    gramian_dtype = tf.float32

    def __init__(self, epsilon: float = 1e-3, max_iters: int = 100, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if epsilon <= 0 or int(max_iters) <= 0:
            raise ValueError("MGDA: `epsilon` and `max_iters` must be positive.")
        self.epsilon = float(epsilon)
        self.max_iters = int(max_iters)

    def gramian_weights(self, gram: Any, num_columns: Any) -> Any:
        m = _ops.static_num_tasks(gram, "MGDA")
        alpha0 = tf.fill([m], tf.constant(1.0 / m, gram.dtype))

        def body(i: Any, alpha: Any, done: Any) -> tuple[Any, Any, Any]:
            g_alpha = tf.linalg.matvec(gram, alpha)
            t = tf.argmin(g_alpha, output_type=tf.int32)
            e_t = tf.one_hot(t, m, dtype=gram.dtype)
            row = tf.gather(gram, t)
            a = tf.tensordot(alpha, row, 1)
            b = tf.tensordot(alpha, g_alpha, 1)
            # Not `gram[t, t]`: XLA needs a strided slice's bounds at compile
            # time, which would constant-fold the whole step (a recompilation
            # per step). A gather takes a run-time index.
            c = tf.gather(row, t)
            denom = b + c - 2.0 * a
            safe = tf.where(denom > 0, denom, tf.ones_like(denom))
            gamma = tf.where(c <= a, 1.0, tf.where(b <= a, 0.0, (b - a) / safe))
            new_alpha = (1.0 - gamma) * alpha + gamma * e_t
            alpha = tf.where(done, alpha, new_alpha)
            return i + 1, alpha, tf.logical_or(done, gamma < self.epsilon)

        _, alpha, _ = tf.while_loop(
            lambda i, alpha, done: tf.logical_and(i < self.max_iters, tf.logical_not(done)),
            body,
            (tf.constant(0), alpha0, tf.constant(False)),
        )
        return alpha

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "epsilon": self.epsilon, "max_iters": self.max_iters}
