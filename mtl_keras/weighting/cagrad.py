"""CAGrad (Liu et al., NeurIPS 2021): conflict-averse gradient descent."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from mtl_keras.weighting import _ops
from mtl_keras.weighting.base import GradientAggregator


@keras.saving.register_keras_serializable(package="mtl_keras")
class CAGrad(GradientAggregator):
    """Conflict-Averse Gradient descent.

    Maximises the worst task improvement `min_i g_i . d` within a ball
    around the mean gradient `g_0`: `||d - g_0|| <= c ||g_0||`. Its dual
    (Algorithm 1), on the trace-normalised Gramian `G_n = G / tr(G)` (zero
    if `tr(G) < norm_eps`) as in torchjd, with `u = 1/m` and
    `s = c sqrt(u^T G_n u)`:

    `w = argmin_{w in simplex} w^T G_n u + s sqrt(w^T G_n w)`,

    then with `r = sqrt(w^T G_n w)` the weights are `u + (s / r) w` (zero if
    `r < norm_eps`: approximately Pareto-stationary) and `d = J^T weights`,
    so d is linear in J. The simplex problem is solved in float64 by
    projected gradient descent with backtracking (a `tf.while_loop` of at
    most `max_iters` steps, stopping once a step barely moves w or the
    objective), whose support then seeds an exact pivoting solve (closed
    form per support, see `_pivot_support`): exact even on ill-conditioned
    Gramians, where projected gradient alone crawls; instead of torchjd's
    cvxpy/Clarabel. If pivoting does not settle (e.g. identical rows make the
    support's system singular), the projected-gradient answer is kept.

    Properties: `c = 0` gives the mean; invariant to permuting rows;
    identical rows give that row (times `1 + c`); with `c >= 1`, d
    conflicts with no task, and is zero when 0 is in the convex hull of the
    rows (decided by an exact min-norm solve, `_hull_distance`). Near such
    decisions the Gramian is computed in float64: in float32 its rounding
    noise (~1e-8 of the trace) alone puts that distance above `norm_eps`.
    A training step uses the float32 Gramian when all its normalised
    eigenvalues exceed `float32_gramian_above` (far from every decision);
    `combination` always uses float64.

    Reference: Liu et al., "Conflict-Averse Gradient Descent for Multi-task
    Learning", NeurIPS 2021 (arXiv:2110.14048).

    Args:
        c: radius of the ball, relative to `||g_0||` (default 0.5).
        norm_eps: threshold of the normalisation and of `r` (torchjd: 1e-4).
        max_iters: projected gradient steps.

    Example:
    >>> from mtl_keras import weighting
    >>> strategy = weighting.CAGrad(c=0.4)
    """

    #: float64: a float32 Gramian has rounding noise ~1e-8 tr(G), so when 0 is
    #: in the convex hull of the rows the solve saw a hull distance
    #: r ~ sqrt(1e-8) > norm_eps and returned a conflicting d.
    gramian_dtype = tf.float64
    #: the float32 Gramian when its normalised eigenvalues all exceed 1e-3:
    #: its rounding noise (~1e-7 of the trace) is then far from every
    #: cut-off, and the weights are as accurate as torchjd's float32 ones
    float32_gramian_above = 1e-3

    def __init__(
        self, c: float = 0.5, norm_eps: float = 1e-4, max_iters: int = 500, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if c < 0 or norm_eps < 0 or int(max_iters) <= 0:
            raise ValueError("CAGrad: `c` and `norm_eps` must be >= 0, `max_iters` positive.")
        self.c = float(c)
        self.norm_eps = float(norm_eps)
        self.max_iters = int(max_iters)

    def gramian_weights(self, gram: Any, num_columns: Any) -> Any:
        """The CAGrad weights (m,) float64 from the Gramian."""
        m = _ops.static_num_tasks(gram, "CAGrad")
        g = tf.cast(_ops.normalize_gramian(gram, self.norm_eps), tf.float64)
        u = tf.fill([m], tf.constant(1.0 / m, tf.float64))
        gu = tf.linalg.matvec(g, u)
        s = self.c * tf.sqrt(tf.maximum(tf.reduce_sum(u * gu), 0.0))
        tiny = tf.constant(1e-30, tf.float64)

        def norm(w: Any, gw: Any) -> Any:
            # w^T G w rounds to -1e-16 on a singular G: clip before the sqrt.
            return tf.sqrt(tf.maximum(tf.reduce_sum(w * gw), 0.0) + tiny)

        def value(w: Any) -> Any:
            return tf.reduce_sum(w * gu) + s * norm(w, tf.linalg.matvec(g, w))

        def grad(w: Any) -> Any:
            gw = tf.linalg.matvec(g, w)
            return gu + s * gw / norm(w, gw)

        def step(i: Any, w: Any, t: Any, moved: Any) -> tuple[Any, Any, Any, Any]:
            f0, g0 = value(w), grad(w)

            def candidate(t: Any) -> tuple[Any, Any]:
                new = _ops.project_simplex(w - t * g0)
                diff = new - w
                bound = f0 + tf.reduce_sum(g0 * diff) + tf.reduce_sum(diff * diff) / (2.0 * t)
                return new, value(new) <= bound + 1e-15

            def shrink(k: Any, t: Any) -> tuple[Any, Any]:
                return k + 1, t * 0.5

            _, t = tf.while_loop(
                lambda k, t: tf.logical_and(k < 60, tf.logical_not(candidate(t)[1])),
                shrink,
                (tf.constant(0), t),
            )
            new = candidate(t)[0]
            # Stop once a step moves w (on the simplex) by < 1e-8 or gains
            # < 1e-12 relative: near the optimum it only wanders at that scale
            # (the sqrt term is not smooth there). ~5-40 steps, not `max_iters`.
            gain = f0 - value(new)
            moved = tf.logical_and(tf.reduce_max(tf.abs(new - w)) > 1e-8, gain > 1e-12 * tf.abs(f0))
            # Try a longer step next time (capped: a flat objective never fails).
            return i + 1, new, tf.minimum(t * 2.0, t_max), moved

        # Initial step from the smooth part's curvature scale.
        t0 = 1.0 / (tf.reduce_max(tf.abs(g)) * m + 1e-12)
        t_max = 1e6 * t0

        _, w_pg, _, _ = tf.while_loop(
            lambda i, w, t, moved: tf.logical_and(i < self.max_iters, moved),
            step,
            (tf.constant(0), u, t0, tf.constant(True)),
        )
        # Its support seeds an exact pivoting solve (projected gradient alone
        # crawls on ill-conditioned Gramians).
        free = tf.cast(w_pg > 1e-6 * tf.reduce_max(w_pg), tf.float64)
        w, done = _pivot_support(g, gu, s, free)
        w = tf.where(done, w, w_pg)
        r = tf.sqrt(tf.maximum(tf.reduce_sum(w * tf.linalg.matvec(g, w)), 0.0))
        small = r < self.norm_eps
        if self.c >= 1.0:
            # With c >= 1 the objective is >= (c - 1) r sqrt(u^T G u) >= 0: its
            # minimum is 0 exactly when 0 is in the convex hull of the rows,
            # at a kink where the solve above can stop with r ~ 1e-3 and a
            # conflicting d. Decide that case by an exact min-norm solve.
            small = tf.logical_or(small, _hull_distance(g) < self.norm_eps)
        return tf.where(small, tf.zeros_like(w), u + (s / tf.where(small, tf.ones_like(r), r)) * w)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "c": self.c,
            "norm_eps": self.norm_eps,
            "max_iters": self.max_iters,
        }


def _hull_distance(g: Any) -> Any:
    """The distance from 0 to the convex hull of the rows whose (float64)
    Gramian is `g`: ~0 (< 1e-6 sqrt(tr g)) when 0 lies in it.

    `min_{w in simplex} w^T (g + eps I) w` by `_pivot_support` (with
    `gu = 0` its objective is `sqrt(w^T (g + eps I) w)`): the ridge
    `eps = 1e-12 tr g` keeps every support system non-singular and moves the
    distance by at most `sqrt(eps)`. If pivoting does not settle, the
    distance is +inf (no zeroing).
    """
    m = int(g.shape[0])
    eps = 1e-12 * tf.linalg.trace(g)
    ridge = g + eps * tf.eye(m, dtype=g.dtype)
    zero, one = tf.zeros([m], g.dtype), tf.constant(1.0, g.dtype)
    w, done = _pivot_support(ridge, zero, one, tf.ones([m], g.dtype))
    dist = tf.sqrt(tf.maximum(tf.reduce_sum(w * tf.linalg.matvec(g, w)), 0.0))
    return tf.where(done, dist, tf.constant(float("inf"), g.dtype))


def _pivot_support(g: Any, gu: Any, s: Any, free: Any) -> tuple[Any, Any]:
    """The exact minimiser of `w.gu + s sqrt(w^T g w)` on the simplex, by
    pivoting on its support F, starting from the support `free` (0/1).

    On a given support the KKT conditions have a closed form: with
    `a = g_FF^-1 1`, `b = g_FF^-1 gu_F`, `A = sum a`, `B = sum b`,
    `C = gu_F . b` and `alpha = s / sqrt(w^T g w)`, the conditions
    `gu_F + alpha (g w)_F = mu 1`, `sum w = 1` and `sqrt(w^T g w) = s / alpha`
    give `alpha = sqrt(B^2 - A C + A s^2)`, `mu = (alpha + B) / A` and
    `w_F = (mu a - b) / alpha`. F is optimal when `w_F >= 0` and
    `gu + alpha g w >= mu` off F; otherwise the offending indices are
    flipped (all of them, or only the largest after three flips without
    progress: `_ops.pivot_flips`). If no support satisfies the
    conditions within the iteration cap (or g_FF is singular, e.g. for
    identical rows), `done` is False and `w` is not to be used.
    """
    m = int(g.shape[0])
    tol = 1e-12 * (1.0 + tf.reduce_max(tf.abs(gu)))

    def solve(free: Any) -> tuple[Any, Any, Any]:
        system = _ops.principal_system(g, free)
        # QR, not `tf.linalg.solve`/Cholesky: outside XLA those raise on a
        # singular system (identical or zero rows), which is an expected
        # outcome here; the KKT residuals below reject such a solve.
        q, r = tf.linalg.qr(system)
        rhs = tf.stack([free, free * gu], axis=1)
        ab = tf.linalg.triangular_solve(r, tf.matmul(q, rhs, transpose_a=True), lower=False)
        a, b = ab[:, 0], ab[:, 1]
        big_a, big_b, big_c = tf.reduce_sum(a), tf.reduce_sum(b), tf.reduce_sum(free * gu * b)
        disc = big_b * big_b - big_a * big_c + big_a * s * s
        alpha = tf.sqrt(tf.maximum(disc, 1e-300))
        mu = (alpha + big_b) / big_a
        w = free * (mu * a - b) / alpha
        residual = gu + alpha * tf.linalg.matvec(g, w) - mu
        slack = (1.0 - free) * residual
        # Stationarity on F and sum(w) = 1 hold exactly when the solve did.
        accurate = tf.logical_and(
            tf.reduce_max(tf.abs(free * residual)) <= 1e-8 * (1.0 + tf.abs(mu)),
            tf.abs(tf.reduce_sum(w) - 1.0) <= 1e-8,
        )
        ok = tf.logical_and(disc > 0, tf.reduce_all(tf.math.is_finite(w)))
        return w, slack, tf.logical_and(ok, accurate)

    def body(it: Any, free: Any, best: Any, tries: Any, done: Any, w: Any) -> tuple:
        w, slack, ok = solve(free)
        bad = tf.where(free > 0, w < -tol, slack < -tol)
        flip, count, best, tries = _ops.pivot_flips(bad, best, tries)
        # A singular or infeasible support ends the search (`it` jumps to the cap).
        it = tf.where(ok, it + 1, 3 * m)
        done = tf.logical_and(ok, count == 0)
        return it, tf.where(flip, 1.0 - free, free), best, tries, done, w

    def cond(it: Any, free: Any, best: Any, tries: Any, done: Any, w: Any) -> Any:
        return tf.logical_and(it < 3 * m, tf.logical_not(done))

    start = (
        tf.constant(0), free, tf.constant(m + 1), tf.constant(_ops.PIVOT_TRIES),
        tf.constant(False), tf.zeros_like(gu),
    )  # fmt: skip
    _, _, _, _, done, w = tf.while_loop(cond, body, start)
    return w, done
