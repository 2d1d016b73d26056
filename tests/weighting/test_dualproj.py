"""DualProj: parity with torchjd and the properties it guarantees."""

from __future__ import annotations

import numpy as np
import pytest
from _support.aggregators import assert_close, cases, check_parity, matrix, random_matrix, run

from mtl_keras.weighting import DualProj


@pytest.mark.parametrize("case", cases("dualproj"))
def test_parity_with_torchjd(case: str) -> None:
    check_parity("dualproj", DualProj, case)


@pytest.mark.parametrize("seed", range(3))
def test_non_conflicting(seed: int) -> None:
    # Exactly non-conflicting without the ridge; with the default reg_eps the
    # conflict is at most of order reg_eps * ||J||_F^2.
    jac = random_matrix((4, 7), seed)
    d = run(DualProj(reg_eps=0.0), jac)
    assert np.all(jac @ d >= -1e-5 * np.linalg.norm(d) * np.linalg.norm(jac, axis=1))


def test_permutation_invariant_and_linear() -> None:
    jac = random_matrix((3, 6), 3)
    d = run(DualProj(), jac)
    assert_close(run(DualProj(), jac[[1, 2, 0]]), d)
    assert_close(run(DualProj(), 0.5 * jac), 0.5 * d)


def test_mean_kept_when_it_conflicts_with_no_task() -> None:
    jac = matrix("aligned_3x4")
    assert_close(run(DualProj(), jac), jac.mean(axis=0))
    assert_close(run(DualProj(), matrix("identical")), matrix("identical")[0])


def test_config_round_trip() -> None:
    agg = DualProj(pref_vector=[1.0, 2.0], reg_eps=1e-3)
    assert DualProj.from_config(agg.get_config()).get_config() == agg.get_config()
