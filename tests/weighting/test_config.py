"""ConFIG: parity with torchjd and its properties."""

from __future__ import annotations

import numpy as np
import pytest
from _support.aggregators import assert_close, cases, check_parity, matrix, random_matrix, run

from mtl_keras.weighting import ConFIG


@pytest.mark.parametrize("case", cases("config"))
def test_parity_with_torchjd(case: str) -> None:
    check_parity("config", ConFIG, case)


@pytest.mark.parametrize("seed", range(3))
def test_equal_cosines_and_no_conflict(seed: int) -> None:
    jac = random_matrix((3, 10), seed)
    d = run(ConFIG(), jac)
    cos = (jac / np.linalg.norm(jac, axis=1, keepdims=True)) @ (d / np.linalg.norm(d))
    np.testing.assert_allclose(cos, cos[0], rtol=1e-4)
    assert np.all(jac @ d > 0)


def test_identical_rows_permutation_and_scaling() -> None:
    assert_close(run(ConFIG(), matrix("identical")), 2.0 * matrix("identical")[0])
    jac = random_matrix((4, 6), 13)
    d = run(ConFIG(), jac)
    assert_close(run(ConFIG(), jac[[3, 1, 0, 2]]), d)
    assert_close(run(ConFIG(), 2.5 * jac), 2.5 * d)


def test_config_round_trip() -> None:
    agg = ConFIG(pref_vector=[1.0, 3.0])
    assert ConFIG.from_config(agg.get_config()).get_config() == agg.get_config()
