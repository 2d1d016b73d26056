"""UPGrad: parity with torchjd and the properties it guarantees."""

from __future__ import annotations

import numpy as np
import pytest
from _support.aggregators import assert_close, cases, check_parity, matrix, random_matrix, run

from mtl_keras.weighting import UPGrad


@pytest.mark.parametrize("case", cases("upgrad"))
def test_parity_with_torchjd(case: str) -> None:
    check_parity("upgrad", UPGrad, case)


@pytest.mark.parametrize("seed", range(3))
def test_non_conflicting(seed: int) -> None:
    # Exactly non-conflicting without the ridge; with the default reg_eps the
    # conflict is at most of order reg_eps * ||J||_F^2.
    jac = random_matrix((4, 7), seed)
    d = run(UPGrad(reg_eps=0.0), jac)
    assert np.all(jac @ d >= -1e-5 * np.linalg.norm(d) * np.linalg.norm(jac, axis=1))


def test_permutation_invariant_and_linear() -> None:
    jac = random_matrix((3, 6), 7)
    d = run(UPGrad(), jac)
    assert_close(run(UPGrad(), jac[[2, 0, 1]]), d)
    assert_close(run(UPGrad(), 3.0 * jac), 3.0 * d)


def test_identical_and_aligned_rows_give_the_mean() -> None:
    assert_close(run(UPGrad(), matrix("identical")), matrix("identical")[0])
    jac = matrix("aligned_3x4")
    assert np.all(jac @ jac.T >= 0)
    assert_close(run(UPGrad(), jac), jac.mean(axis=0))


def test_config_round_trip() -> None:
    agg = UPGrad(pref_vector=[0.2, 0.8], norm_eps=1e-3, reg_eps=1e-5)
    assert UPGrad.from_config(agg.get_config()).get_config() == agg.get_config()
