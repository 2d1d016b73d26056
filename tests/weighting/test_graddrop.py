"""GradDrop: parity with torchjd (pinned uniform draw) and its properties."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from _support.aggregators import assert_close, build, cases, matrix, random_matrix, reference, run

from mtl_keras.weighting import GradDrop


@pytest.mark.parametrize("case", cases("graddrop"))
def test_parity_with_torchjd(case: str) -> None:
    uniform = tf.constant(reference()["uniform"][case], tf.float32)
    fn = tf.function(GradDrop().aggregate_with_uniform, jit_compile=True)
    expected = reference()["methods"]["graddrop"]["results"][case]
    assert_close(fn(tf.constant(matrix(case)), uniform), expected)


def test_full_leak_is_the_sum_and_agreeing_signs_are_kept() -> None:
    jac = random_matrix((3, 6), 0)
    assert_close(run(GradDrop(leak=[1.0, 1.0, 1.0]), jac), jac.sum(axis=0))
    same_sign = np.abs(jac)
    assert_close(run(GradDrop(), same_sign), same_sign.sum(axis=0))
    assert_close(run(GradDrop(), -same_sign), -same_sign.sum(axis=0))


def test_each_coordinate_takes_one_sign() -> None:
    jac = random_matrix((4, 50), 1)
    d = run(build(GradDrop(seed=2), 4), jac)
    pos, neg = np.where(jac > 0, jac, 0).sum(0), np.where(jac < 0, jac, 0).sum(0)
    assert np.all(np.isclose(d, pos, atol=1e-6) | np.isclose(d, neg, atol=1e-6))


def test_seeded_draws_are_reproducible() -> None:
    jac = random_matrix((2, 30), 3)
    a, b = build(GradDrop(seed=5), 2), build(GradDrop(seed=5), 2)
    first = [run(a, jac, jit=False) for _ in range(3)]
    np.testing.assert_array_equal(
        np.stack(first), np.stack([run(b, jac, jit=False) for _ in range(3)])
    )
    assert not np.array_equal(first[0], first[1])  # fresh draw each step


def test_config_round_trip() -> None:
    agg = GradDrop(leak=[0.1, 0.0], seed=3)
    assert GradDrop.from_config(agg.get_config()).get_config() == agg.get_config()


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "xla"])
@pytest.mark.parametrize("leak", [None, [0.3, 0.0, 1.0, 0.5]])
def test_row_wise_step_form_equals_the_matrix_form(leak: list[float] | None, jit: bool) -> None:
    """What the step runs (positive and negative parts row by row) is the
    paper's matrix form `sum_i (l_i + (1 - l_i) M_ik) J_ik`, and its weights
    are the surviving share of each row's mass; also with zeros and with a
    draw equal to the purity (then neither sign is kept)."""
    rng = np.random.default_rng(7)
    jac = rng.normal(size=(4, 300)).astype("float32")
    jac[:, :20] = 0.0
    jac[1, 20:40] = 0.0
    jac[:, 40] = [1.0, -1.0, 2.0, -2.0]  # purity exactly 1/2
    uniform = rng.uniform(size=300).astype("float32")
    uniform[40] = 0.5
    agg = GradDrop(leak=leak)
    step = agg.direction_and_weights_with_uniform
    if jit:
        step = tf.function(step, jit_compile=True)
    direction, weights = step(tf.constant(jac), tf.constant(uniform))
    factor = _kept_factor(jac, uniform, leak)
    np.testing.assert_allclose(direction.numpy(), (factor * jac).sum(0), rtol=1e-5, atol=1e-6)
    mass = np.abs(jac)
    np.testing.assert_allclose(
        weights.numpy(), (factor * mass).sum(1) / mass.sum(1), rtol=1e-5, atol=1e-6
    )
    # At the tie only the leaked part remains.
    tie = 0.0 if leak is None else float(np.dot(leak, jac[:, 40]))
    assert direction.numpy()[40] == pytest.approx(tie)


def _kept_factor(jac: np.ndarray, uniform: np.ndarray, leak: list[float] | None) -> np.ndarray:
    """The paper's matrix form `l_i + (1 - l_i) M_ik` for a draw U (lines 10-15
    of Algorithm 1): task i keeps J_ik where `(P_k > U_k and J_ik > 0) or
    (P_k < U_k and J_ik < 0)`, with purity `P = (1 + sum_i J_i / sum_i |J_i|) / 2`."""
    mass = np.abs(jac).sum(0)
    purity = 0.5 * (1.0 + jac.sum(0) / np.where(mass > 0, mass, 1.0))
    keep = ((purity > uniform) & (jac > 0)) | ((purity < uniform) & (jac < 0))
    lk = np.zeros(len(jac)) if leak is None else np.asarray(leak)
    return lk[:, None] + (1.0 - lk[:, None]) * keep
