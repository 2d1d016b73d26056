"""Nash-MTL (Navon et al., ICML 2022): multi-task learning as a bargaining game."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from mtl_keras.tasks import Task
from mtl_keras.weighting import _ops
from mtl_keras.weighting.base import GradientAggregator


@keras.saving.register_keras_serializable(package="mtl_keras")
class NashMTL(GradientAggregator):
    """Nash bargaining solution of the tasks' utilities `g_i . d`.

    The paper's update is `d = J^T a` where `a > 0` solves
    `a_i (G a)_i = 1` for all i (`G = J J^T`), i.e. `G a = 1 / a`. This is
    the stationarity condition of the strictly convex problem
    `min_{a > 0} 0.5 a^T G a - sum_i log a_i`, which is solved here with
    at most `optim_niter` damped Newton steps (self-concordant objective, so
    the steps stay feasible and converge quadratically) on `G / ||G||_F`,
    then rescaled: `a = a_n / sqrt(||G||_F)`. Then, as in torchjd, if
    `||d|| > max_norm > 0`, a is scaled so that `||d|| = max_norm`.
    The paper and torchjd approach the same point with a sequence of convex
    (CCP) programs solved by cvxpy/ECOS; where that converges the results
    agree, but it can stop short or fail (torchjd then keeps its previous
    weights), whereas this Newton form solves the fixed point and traces
    under XLA. When no solution exists (a zero row, or 0 in the convex hull
    of the rows), the iterates grow along the degenerate directions, whose
    contribution to d vanishes; d stays finite.

    Weights are recomputed every `update_weights_every` steps and reused in
    between (state: the last weights and a step counter, both Keras
    variables).

    Properties: with orthogonal rows `a_i = 1 / ||g_i||` (d is the sum of
    the unit gradients, before clipping); `g_i . d = 1 / a_i > 0` for every
    task before clipping (no conflict); invariant to permuting rows.

    Reference: Navon et al., "Multi-Task Learning as a Bargaining Game",
    ICML 2022 (arXiv:2202.01017), Algorithm 1.

    Args:
        max_norm: maximum norm of d; 0 disables clipping (torchjd: 1.0).
        update_weights_every: recompute the weights every this many steps.
        optim_niter: maximum Newton steps per solve (stops at convergence).

    Example:
    >>> from mtl_keras import weighting
    >>> strategy = weighting.NashMTL(update_weights_every=4)
    """

    gramian_dtype = tf.float32

    def __init__(
        self,
        max_norm: float = 1.0,
        update_weights_every: int = 1,
        optim_niter: int = 20,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if max_norm < 0 or int(update_weights_every) <= 0 or int(optim_niter) <= 0:
            raise ValueError(
                "NashMTL: `max_norm` must be >= 0, `update_weights_every` and "
                "`optim_niter` positive."
            )
        self.max_norm = float(max_norm)
        self.update_weights_every = int(update_weights_every)
        self.optim_niter = int(optim_niter)

    def build_state(self, tasks: list[Task]) -> None:
        m = len(tasks)
        self.alpha = self.add_weight(
            name="alpha",
            shape=(m,),
            initializer="ones",
            dtype="float32",
            trainable=False,
            aggregation="only_first_replica",
        )
        self.step = self.add_weight(
            name="step",
            shape=(),
            initializer="zeros",
            dtype="int64",
            trainable=False,
            aggregation="only_first_replica",
        )

    def solve(self, gram: Any) -> Any:
        """Weights a with `a * (G a) = 1`, float64 (m,)."""
        gram = tf.cast(gram, tf.float64)
        scale = tf.norm(gram)
        safe_scale = tf.where(scale > 0, scale, tf.ones_like(scale))
        g = gram / safe_scale
        # Start at the solution for orthogonal rows (ones for zero rows).
        diag = tf.linalg.diag_part(g)
        ones = tf.ones_like(diag)
        a = tf.where(diag > 1e-12, 1.0 / tf.sqrt(tf.where(diag > 1e-12, diag, ones)), ones)

        def newton(i: Any, a: Any, decrement: Any) -> tuple[Any, Any, Any]:
            grad = tf.linalg.matvec(g, a) - 1.0 / a
            hess = g + tf.linalg.diag(1.0 / (a * a))
            delta = -_ops.spd_solve(hess, grad[:, None])[:, 0]
            decrement = tf.sqrt(tf.maximum(-tf.reduce_sum(grad * delta), 0.0))
            # Damped step 1/(1+lambda) keeps a > 0; full steps once close.
            damping = tf.where(decrement < 0.25, tf.ones_like(decrement), 1.0 / (1.0 + decrement))
            return i + 1, a + damping * delta, decrement

        # At most `optim_niter` Newton steps; stop once the decrement is at
        # round-off level (quadratic convergence: usually a handful).
        _, a, _ = tf.while_loop(
            lambda i, a, decrement: tf.logical_and(i < self.optim_niter, decrement > 1e-12),
            newton,
            (tf.constant(0), a, tf.constant(1.0, tf.float64)),
        )
        return a / tf.sqrt(safe_scale)

    def gramian_weights(self, gram: Any, num_columns: Any) -> Any:
        _ops.static_num_tasks(gram, "NashMTL")
        if not hasattr(self, "alpha"):
            raise ValueError("NashMTL keeps state: call `build_for_tasks(tasks)` first.")
        recompute = tf.equal(self.step % self.update_weights_every, 0)
        alpha = tf.cond(
            recompute,
            lambda: self.solve(gram),
            lambda: tf.cast(tf.convert_to_tensor(self.alpha), tf.float64),
        )
        self.alpha.assign(tf.cast(alpha, tf.float32))
        self.step.assign_add(1)
        if self.max_norm > 0:
            # ||d||^2 = a^T G a, in float64 to avoid cancellation between rows.
            quad = tf.reduce_sum(alpha * tf.linalg.matvec(tf.cast(gram, tf.float64), alpha))
            norm = tf.sqrt(tf.maximum(quad, 0.0))
            alpha = tf.where(norm > self.max_norm, alpha * (self.max_norm / norm), alpha)
        return alpha

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "max_norm": self.max_norm,
            "update_weights_every": self.update_weights_every,
            "optim_niter": self.optim_niter,
        }
