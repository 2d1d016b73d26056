"""CAGrad: parity with torchjd (c=0.5) and its properties."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorflow as tf
from _support.aggregators import assert_close, cases, check_parity, matrix, random_matrix, run

from mtl_keras.weighting import CAGrad


@pytest.mark.parametrize("case", cases("cagrad"))
def test_parity_with_torchjd(case: str) -> None:
    check_parity("cagrad", CAGrad, case)


@pytest.mark.parametrize("case", ["identical", "opposite", "zero_row", "tiny", "random_5x20"])
def test_without_xla_singular_supports_do_not_raise(case: str) -> None:
    # Outside XLA `tf.linalg.solve`/Cholesky raise on the singular support
    # systems of identical or zero rows; the pivoting solve must not.
    assert_close(run(CAGrad(), matrix(case), jit=False), run(CAGrad(), matrix(case)))


def test_c_zero_is_the_mean_and_identical_rows_scale_by_one_plus_c() -> None:
    jac = random_matrix((3, 5), 1)
    assert_close(run(CAGrad(c=0.0), jac), jac.mean(axis=0))
    assert_close(run(CAGrad(c=0.4), matrix("identical")), 1.4 * matrix("identical")[0])


def test_permutation_invariant_and_linear() -> None:
    jac = random_matrix((3, 6), 9)
    d = run(CAGrad(), jac)
    assert_close(run(CAGrad(), jac[[2, 1, 0]]), d, rtol=1e-3)
    assert_close(run(CAGrad(), 5.0 * jac), 5.0 * d, rtol=1e-3)


def test_improves_the_worst_task_over_the_mean() -> None:
    # CAGrad maximises min_i g_i . d in a ball around the mean g0.
    jac = matrix("conflict_2x3")
    d, g0 = run(CAGrad(), jac), jac.mean(axis=0)
    assert np.min(jac @ d) > np.min(jac @ g0)


def test_config_round_trip() -> None:
    agg = CAGrad(c=0.2, norm_eps=1e-5, max_iters=50)
    assert CAGrad.from_config(agg.get_config()).get_config() == agg.get_config()


def _exact_weights(jac: np.ndarray, c: float = 0.5) -> np.ndarray:
    """Brute force over supports of the simplex problem, float64 (see
    `cagrad._pivot_support` for the closed form on one support)."""
    j = jac.astype(np.float64)
    g = j @ j.T / np.trace(j @ j.T)
    m = len(g)
    u = np.full(m, 1.0 / m)
    gu, s = g @ u, c * np.sqrt(u @ g @ u)
    best, best_w = np.inf, None
    for k in range(1, m + 1):
        for support in itertools.combinations(range(m), k):
            f = list(support)
            a = np.linalg.solve(g[np.ix_(f, f)], np.ones(k))
            b = np.linalg.solve(g[np.ix_(f, f)], gu[f])
            disc = b.sum() ** 2 - a.sum() * (gu[f] @ b) + a.sum() * s * s
            if disc <= 0:
                continue
            alpha = np.sqrt(disc)
            w = np.zeros(m)
            w[f] = ((alpha + b.sum()) / a.sum() * a - b) / alpha
            value = w @ gu + s * np.sqrt(w @ g @ w)
            if np.all(w >= -1e-12) and value < best:
                best, best_w = value, w
    r = np.sqrt(best_w @ g @ best_w)
    return np.zeros(m) if r < 1e-4 else u + s / r * best_w  # norm_eps, as torchjd


@pytest.mark.parametrize("spread", [0.0, 1.0, 2.0])
def test_exact_on_ill_conditioned_gramians(spread: float) -> None:
    # Row norms over 10**(2*spread): projected gradient alone crawls there.
    for seed in range(3):
        jac = random_matrix((6, 20), seed) * np.logspace(-spread, spread, 6)[:, None]
        jac = jac.astype(np.float32)
        got = tf.function(CAGrad().combination, jit_compile=True)(tf.constant(jac)).numpy()
        np.testing.assert_allclose(got, _exact_weights(jac), rtol=1e-5)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "xla"])
@pytest.mark.parametrize("c", [0.5, 1.0])
def test_rows_that_sum_to_zero_give_a_zero_direction_not_nan(c: float, jit: bool) -> None:
    """At a Pareto-stationary point whose mean gradient is zero, `w^T G w`
    rounds to a tiny negative number on the singular Gramian; its square
    root was NaN, which the model would have reported as a non-finite
    gradient. The direction is zero (the ball around g_0 = 0 has radius 0)."""
    jac = np.random.default_rng(4).normal(size=(3, 400)).astype("float32")
    jac[2] = -(jac[0] + jac[1])
    direction = run(CAGrad(c=c), jac, jit=jit)
    assert np.isfinite(direction).all()
    np.testing.assert_allclose(direction, 0.0, atol=1e-5)
