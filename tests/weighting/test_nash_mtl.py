"""Nash-MTL: parity with the paper's fixed point (and torchjd where it converges)."""

from __future__ import annotations

import numpy as np
import pytest
from _support.aggregators import assert_close, build, cases, matrix, random_matrix, reference, run

from mtl_keras.weighting import NashMTL


@pytest.mark.parametrize("case", cases("nash_mtl_fixed_point"))
def test_parity_with_the_nash_fixed_point(case: str) -> None:
    # SciPy re-derivation of a * (G a) = 1 (see fixtures/generate_torchjd.py).
    jac = matrix(case)
    expected = reference()["methods"]["nash_mtl_fixed_point"]["results"][case]
    assert_close(run(build(NashMTL(), jac.shape[0]), jac), expected)


@pytest.mark.parametrize("case", ["conflict_2x3", "aligned_3x4", "random_3x10", "random_5x20"])
def test_parity_with_torchjd_where_its_solver_converges(case: str) -> None:
    jac = matrix(case)
    expected = reference()["methods"]["nash_mtl"]["results"][case]
    assert_close(run(build(NashMTL(), jac.shape[0]), jac), expected)


def test_bargaining_solution_properties() -> None:
    jac = random_matrix((3, 9), 1)
    agg = build(NashMTL(max_norm=0.0, update_weights_every=1), 3)
    d = run(agg, jac, jit=False)
    alpha = np.asarray(agg.alpha)
    # Every task's utility g_i . d equals 1 / a_i > 0: no conflict.
    np.testing.assert_allclose(jac @ d, 1.0 / alpha, rtol=1e-4)
    perm = build(NashMTL(max_norm=0.0), 3)
    assert_close(run(perm, jac[[2, 0, 1]]), d)
    # Orthogonal rows: the sum of unit gradients.
    ortho = np.diag([2.0, 0.5, 4.0]).astype(np.float32)
    assert_close(run(build(NashMTL(max_norm=0.0), 3), ortho), np.ones(3))


def test_clipping_and_update_interval() -> None:
    jac = 10.0 * random_matrix((2, 5), 2)
    agg = build(NashMTL(max_norm=1.0, update_weights_every=2), 2)
    d1 = run(agg, jac, jit=False)
    assert np.linalg.norm(d1) == pytest.approx(1.0, rel=1e-5)
    alpha = np.asarray(agg.alpha).copy()
    d2 = run(agg, 2.0 * jac, jit=False)  # step 1: weights reused
    np.testing.assert_array_equal(np.asarray(agg.alpha), alpha)
    assert_close(d2, d1)  # same weights on 2J, clipped back to norm 1
    assert int(agg.step) == 2


@pytest.mark.parametrize("case", ["opposite", "zero_row"])
def test_degenerate_inputs_stay_finite(case: str) -> None:
    jac = matrix(case)
    d = run(build(NashMTL(), jac.shape[0]), jac)
    assert np.all(np.isfinite(d)) and np.linalg.norm(d) <= 1.0 + 1e-5


def test_config_round_trip() -> None:
    agg = NashMTL(max_norm=0.5, update_weights_every=3, optim_niter=10)
    assert NashMTL.from_config(agg.get_config()).get_config() == agg.get_config()
