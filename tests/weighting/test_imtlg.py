"""IMTL-G: parity with torchjd and its properties."""

from __future__ import annotations

import numpy as np
import pytest
from _support.aggregators import assert_close, cases, check_parity, matrix, random_matrix, run

from mtl_keras.weighting import IMTLG


@pytest.mark.parametrize("case", cases("imtl_g"))
def test_parity_with_torchjd(case: str) -> None:
    check_parity("imtl_g", IMTLG, case)


def test_equal_projections_on_unit_gradients() -> None:
    jac = random_matrix((3, 8), 4)
    d = run(IMTLG(), jac)
    proj = (jac / np.linalg.norm(jac, axis=1, keepdims=True)) @ d
    np.testing.assert_allclose(proj, proj[0], rtol=1e-4)


def test_identical_rows_permutation_and_scaling() -> None:
    assert_close(run(IMTLG(), matrix("identical")), matrix("identical")[0])
    jac = random_matrix((3, 6), 8)
    d = run(IMTLG(), jac)
    assert_close(run(IMTLG(), jac[[1, 0, 2]]), d)
    assert_close(run(IMTLG(), 0.1 * jac), 0.1 * d)
