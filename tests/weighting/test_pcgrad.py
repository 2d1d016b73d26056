"""PCGrad: parity with torchjd (pinned visiting order) and its properties."""

from __future__ import annotations

import numpy as np
import pytest
from _support.aggregators import (
    assert_close,
    build,
    cases,
    check_parity,
    matrix,
    random_matrix,
    run,
)

from mtl_keras.weighting import PCGrad


@pytest.mark.parametrize("case", cases("pcgrad"))
def test_parity_with_torchjd(case: str) -> None:
    check_parity("pcgrad", lambda: PCGrad(random_order=False), case)


def test_two_tasks_order_free_and_non_conflicting() -> None:
    jac = matrix("conflict_2x3")
    d = run(PCGrad(random_order=False), jac)
    assert_close(run(build(PCGrad(seed=3), 2), jac), d)
    assert np.all(jac @ d >= -1e-6)


def test_non_conflicting_rows_give_their_sum_and_linear() -> None:
    jac = matrix("aligned_3x4")
    assert_close(run(PCGrad(), jac), jac.sum(axis=0))
    jac = random_matrix((3, 6), 5)
    agg = PCGrad(random_order=False)
    assert_close(run(agg, 2.0 * jac), 2.0 * run(agg, jac))


def test_random_order_is_seeded_and_varies() -> None:
    jac = random_matrix((4, 6), 2)
    a, b = build(PCGrad(seed=1), 4), build(PCGrad(seed=1), 4)
    first = [run(a, jac, jit=False) for _ in range(6)]
    assert_close(np.stack([run(b, jac, jit=False) for _ in range(6)]), np.stack(first))
    assert all(np.all(np.isfinite(f)) for f in first)


def test_config_round_trip() -> None:
    agg = PCGrad(random_order=False, seed=4)
    assert PCGrad.from_config(agg.get_config()).get_config() == agg.get_config()
