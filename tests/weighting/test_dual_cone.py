"""The dual-cone QP solver behind UPGrad and DualProj (`_ops.dual_cone_weights`).

`min_v v^T G v s.t. v >= u` is convex, so its KKT conditions certify the
optimum exactly: `v >= u`, `y = G v >= 0` and `(v - u) . y = 0`. Small
problems are also compared with brute force over all 2**m active sets.
"""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

import mtl_keras as mk
from mtl_keras import weighting
from mtl_keras.weighting import UPGrad, _ops


def _gramian(m: int, kind: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    jac = rng.normal(size=(m, 3 * m + 5))
    if kind == "opposite":
        jac[1] = -jac[0]
    elif kind == "zero_row":
        jac[-1] = 0.0
    elif kind == "identical":
        jac[1] = jac[0]
    elif kind == "norms":
        jac *= np.logspace(-3, 3, m)[:, None]
    elif kind == "low_rank":
        jac = rng.normal(size=(m, 2)) @ rng.normal(size=(2, 3 * m + 5))
    gram = jac @ jac.T
    return gram / np.trace(gram) + 1e-4 * np.eye(m)  # as UPGrad sees it


_compiled = tf.function(_ops.dual_cone_weights, jit_compile=True)  # one trace per shape


def _solve(gram: np.ndarray, targets: np.ndarray) -> np.ndarray:
    return _compiled(tf.constant(gram), tf.constant(targets)).numpy()


def _brute_force(gram: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Best feasible KKT point over every active set (exact, 2**m solves)."""
    best, best_value = None, np.inf
    for active in itertools.product([False, True], repeat=len(u)):
        a = np.array(active)
        system = np.where(a[:, None], np.eye(len(u)), gram)
        v = np.linalg.solve(system, np.where(a, u, 0.0))
        if np.all(v >= u - 1e-10) and v @ gram @ v < best_value:
            best, best_value = v, v @ gram @ v
    return best


KINDS = ["random", "opposite", "zero_row", "identical", "norms", "low_rank"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("m", [2, 3, 5, 8])
def test_matches_brute_force(m: int, kind: str) -> None:
    for seed in range(3):
        gram = _gramian(m, kind, seed)
        targets = np.eye(m) / m  # UPGrad's targets
        got = _solve(gram, targets)
        want = np.stack([_brute_force(gram, targets[:, j]) for j in range(m)], axis=1)
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-7 * np.abs(want).max())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("m", [12, 20, 40])
def test_kkt_conditions_hold_for_many_tasks(m: int, kind: str) -> None:
    # e.g. the 40 attributes of CelebA: no cap on the number of tasks
    gram = _gramian(m, kind, 0)
    targets = np.concatenate([np.eye(m) / m, np.full((m, 1), 1.0 / m)], axis=1)
    v = _solve(gram, targets)
    y = gram @ v
    scale = np.abs(gram @ targets).max()
    assert np.all(v >= targets - 1e-12)
    assert np.all(y >= -1e-9 * scale)
    np.testing.assert_allclose(np.sum((v - targets) * y, axis=0), 0.0, atol=1e-9 * scale)


def test_upgrad_with_forty_tasks_conflicts_with_none() -> None:
    jac = np.random.default_rng(3).normal(size=(40, 200)).astype(np.float32)
    jac[1] = -jac[0]
    d = tf.function(UPGrad(reg_eps=0.0).aggregate, jit_compile=True)(tf.constant(jac)).numpy()
    assert np.all(jac @ d >= -1e-4 * np.linalg.norm(d) * np.linalg.norm(jac, axis=1))
    assert np.linalg.norm(d) > 0


# Slow: the XLA compile of a 16-task step (~13 s CPU each).
@pytest.mark.slow
@pytest.mark.parametrize("name", ["upgrad", "dualproj"])
def test_fit_with_sixteen_tasks_under_xla(name: str) -> None:
    # More tasks than the old 2**m enumeration could take (12), in a train step.
    keras.utils.set_random_seed(0)
    tasks = [mk.Regression(f"t{i}") for i in range(16)]
    model = mk.builders.shared_bottom(
        keras.Input((6,), name="x"), tasks, trunk_units=(16,), tower_units=()
    )
    model.compile(keras.optimizers.SGD(0.05), weighting=weighting.get(name), jit_compile=True)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    coef = rng.normal(size=(6, 16)).astype("float32")
    y = {f"t{i}": x @ coef[:, i] for i in range(16)}
    history = model.fit(x, y, batch_size=32, epochs=4, verbose=0).history
    assert np.isfinite(history["loss"]).all()
    assert history["loss"][-1] < history["loss"][0]
    weights = [history[f"t{i}_weight"][-1] for i in range(16)]
    assert np.all(np.isfinite(weights)) and np.all(np.asarray(weights) >= 0)


@pytest.mark.parametrize("jit", [False, True], ids=["graph", "xla"])
@pytest.mark.parametrize("m", [1, 3, 8, 20])
def test_spd_solve_matches_numpy(m: int, jit: bool) -> None:
    """The unrolled elimination the pivoting solves use: batched, several
    right-hand sides, accurate on the conditioning UPGrad's ridge allows
    (1e-4 of the trace), eagerly and under XLA."""
    rng = np.random.default_rng(m)
    factors = rng.normal(size=(4, m, m))
    system = factors @ factors.transpose(0, 2, 1)
    system = system / np.trace(system, axis1=1, axis2=2)[:, None, None] + 1e-4 * np.eye(m)
    rhs = rng.normal(size=(4, m, 2))
    solve = tf.function(_ops.spd_solve, jit_compile=True) if jit else _ops.spd_solve
    got = solve(tf.constant(system), tf.constant(rhs)).numpy()
    np.testing.assert_allclose(got, np.linalg.solve(system, rhs), rtol=1e-7, atol=1e-9)


def test_spd_solve_of_a_singular_system_is_not_finite() -> None:
    """No error, as XLA's Cholesky: the callers' finiteness checks see it."""
    got = _ops.spd_solve(tf.zeros([2, 2], tf.float64), tf.ones([2, 1], tf.float64))
    assert not np.isfinite(got.numpy()).all()
