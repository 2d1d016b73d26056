"""MGDA: parity with torchjd and the properties it guarantees."""

from __future__ import annotations

import numpy as np
import pytest
from _support.aggregators import assert_close, cases, check_parity, matrix, random_matrix, run

from mtl_keras.weighting import MGDA


@pytest.mark.parametrize("case", cases("mgda"))
def test_parity_with_torchjd(case: str) -> None:
    check_parity("mgda", MGDA, case)


@pytest.mark.parametrize("seed", range(3))
def test_min_norm_point_does_not_conflict(seed: int) -> None:
    # At the min-norm point J d >= ||d||^2; a converged Frank-Wolfe gets close.
    jac = random_matrix((3, 8), seed)
    d = run(MGDA(epsilon=1e-7, max_iters=5000), jac)
    assert np.all(jac @ d >= np.dot(d, d) - 1e-3 * np.linalg.norm(d) * np.linalg.norm(jac))


def test_pareto_stationary_and_identical_rows() -> None:
    assert_close(run(MGDA(), matrix("opposite")), np.zeros(4))
    assert_close(run(MGDA(), matrix("identical")), matrix("identical")[0])


def test_linear_under_scaling() -> None:
    jac = random_matrix((3, 5), 11)
    assert_close(run(MGDA(), 4.0 * jac), 4.0 * run(MGDA(), jac))


def test_config_round_trip() -> None:
    agg = MGDA(epsilon=1e-4, max_iters=7)
    assert MGDA.from_config(agg.get_config()).get_config() == agg.get_config()
