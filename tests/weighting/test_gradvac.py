"""GradVac: stateful parity with torchjd (pinned order) and its properties."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from _support.aggregators import assert_close, build, cases, matrix, reference, run

from mtl_keras.weighting import GradVac


@pytest.mark.parametrize("case", cases("gradvac"))
def test_parity_with_torchjd_over_three_steps(case: str) -> None:
    spec = reference()["methods"]["gradvac"]["results"][case]
    agg = build(GradVac(random_order=False), len(spec["inputs"][0]))
    fn = tf.function(agg.aggregate, jit_compile=True)
    for jac, expected in zip(spec["inputs"], spec["outputs"]):
        assert_close(fn(tf.constant(jac, tf.float32)), expected)


def test_first_step_on_agreeing_rows_is_the_sum_and_targets_move() -> None:
    jac = matrix("aligned_3x4")
    agg = build(GradVac(beta=0.5), 3)
    assert_close(run(agg, jac, jit=False), jac.sum(axis=0))
    unit = jac / np.linalg.norm(jac, axis=1, keepdims=True)
    cos = unit @ unit.T
    expected = 0.5 * (cos - np.diag(np.diag(cos)))
    np.testing.assert_allclose(np.asarray(agg.targets), expected, rtol=1e-5, atol=1e-6)


def test_two_tasks_order_free() -> None:
    jac = matrix("conflict_2x3")
    a, b = build(GradVac(random_order=False), 2), build(GradVac(seed=1), 2)
    for _ in range(3):
        assert_close(run(b, jac, jit=False), run(a, jac, jit=False))


def test_needs_state_and_config_round_trip() -> None:
    with pytest.raises(ValueError, match="build_for_tasks"):
        GradVac().aggregate(tf.ones([2, 3]))
    agg = GradVac(beta=0.1, eps=1e-6, random_order=False, seed=2)
    assert GradVac.from_config(agg.get_config()).get_config() == agg.get_config()
