"""CAGrad: parity with torchjd (c=0.5) and its properties."""

from __future__ import annotations

import numpy as np
import pytest
from aggregator_helpers import assert_close, cases, check_parity, matrix, random_matrix, run

from mtl_keras.weighting import CAGrad


@pytest.mark.parametrize("case", cases("cagrad"))
def test_parity_with_torchjd(case: str) -> None:
    check_parity("cagrad", CAGrad, case)


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
