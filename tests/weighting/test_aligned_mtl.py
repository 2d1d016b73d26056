"""Aligned-MTL: parity with torchjd and its properties."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from _support.aggregators import assert_close, cases, check_parity, matrix, random_matrix, run

from mtl_keras.weighting import AlignedMTL


@pytest.mark.parametrize("case", cases("aligned_mtl"))
def test_parity_with_torchjd(case: str) -> None:
    check_parity("aligned_mtl", AlignedMTL, case)


@pytest.mark.parametrize("mode", ["min", "median", "rmse"])
def test_scale_modes_match_the_definition(mode: str) -> None:
    jac = random_matrix((4, 9), 6).astype(np.float64)
    lam, vec = np.linalg.eigh(jac @ jac.T)
    scale = {"min": lam.min(), "median": np.sort(lam)[(len(lam) - 1) // 2], "rmse": lam.mean()}
    balance = np.sqrt(scale[mode]) * vec @ np.diag(lam**-0.5) @ vec.T
    assert_close(run(AlignedMTL(scale_mode=mode), jac), (balance @ np.full(4, 0.25)) @ jac)
    aligned = balance @ jac  # orthogonal rows of equal norm sqrt(scale)
    np.testing.assert_allclose(aligned @ aligned.T, scale[mode] * np.eye(4), atol=1e-4 * lam.max())


def test_identical_rows_permutation_and_scaling() -> None:
    assert_close(run(AlignedMTL(), matrix("identical")), matrix("identical")[0])
    jac = random_matrix((3, 6), 12)
    d = run(AlignedMTL(), jac)
    assert_close(run(AlignedMTL(), jac[[2, 0, 1]]), d)
    assert_close(run(AlignedMTL(), 3.0 * jac), 3.0 * d)
    assert_close(run(AlignedMTL(), tf.zeros([2, 3])), np.zeros(3))


def test_config_round_trip() -> None:
    agg = AlignedMTL(pref_vector=[0.5, 0.5], scale_mode="median")
    assert AlignedMTL.from_config(agg.get_config()).get_config() == agg.get_config()
    with pytest.raises(ValueError, match="scale_mode"):
        AlignedMTL(scale_mode="max")
