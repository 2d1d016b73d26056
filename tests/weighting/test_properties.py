"""torchjd's aggregator property suite, replayed on ours (issue #13, item 12).

Which aggregator has which property follows torchjd's own
`tests/unit/aggregation/test_<name>.py` (same tolerances): finite output of
the right shape everywhere (typical and scaled matrices), non-conflicting
(`J d >= 0`), permutation invariant, linear under row scaling, and strongly
stationary (non-zero output on non-strongly-stationary matrices). The
matrices (`property_matrices`) are rank-deficient, stationary or not, zero,
and scaled by 0, 1e-10 ... 1e15. Each aggregator runs as a `tf.function`
(one trace per shape; eagerly, the while-loop solvers took tens of seconds
over the matrix set, and the eager path is checked in
`test_aggregator_weights.py`); the same checks under `jit_compile=True` are
marked slow and use the (4, 3) and (20, 10) matrices only (one XLA
compilation per shape).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from _support.aggregators import build
from property_matrices import group

from mtl_keras import weighting as w

JIT = [pytest.param(False, id="graph"), pytest.param(True, marks=pytest.mark.slow, id="xla")]
#: Under XLA only these shapes (one compilation each) keep the slow run short.
XLA_SHAPES = {(4, 3), (20, 10)}


def matrices(name: str, jit: bool, min_rows: int = 1) -> dict[str, np.ndarray]:
    found = group(name, min_rows)
    return {k: v for k, v in found.items() if not jit or v.shape in XLA_SHAPES}


FACTORIES: dict[str, Callable[[], Any]] = {
    "upgrad": w.UPGrad,
    "dualproj": w.DualProj,
    "mgda": w.MGDA,
    "config": w.ConFIG,
    "cagrad": lambda: w.CAGrad(c=0.5),
    "imtlg": w.IMTLG,
    "aligned_mtl": w.AlignedMTL,
    "pcgrad": lambda: w.PCGrad(random_order=False),
    "graddrop": lambda: w.GradDrop(seed=0),
}


class Runner:
    """Calls one aggregator per number of tasks, in a tf.function (XLA or not)."""

    def __init__(self, make: Callable[[], Any], jit: bool) -> None:
        self.make, self.jit, self.fns = make, jit, {}

    def __call__(self, jac: np.ndarray) -> np.ndarray:
        m = jac.shape[0]
        if m not in self.fns:
            agg = build(self.make(), m)
            self.fns[m] = tf.function(agg.aggregate, jit_compile=self.jit)
        out = self.fns[m](tf.constant(np.asarray(jac, np.float32)))
        return np.asarray(out, np.float64)


def _close(actual: np.ndarray, expected: np.ndarray, atol: float, rtol: float, what: str) -> None:
    np.testing.assert_allclose(actual, expected, atol=atol, rtol=rtol, err_msg=what)


def _non_conflicting(run: Runner, jac: np.ndarray, tol: float, name: str) -> None:
    out = jac.astype(np.float64) @ run(jac)
    positive = np.linalg.norm(out[out >= 0])
    _close(positive, np.linalg.norm(out), tol, tol, f"{name}: J d has negative entries")


def _permutation_invariant(run: Runner, jac: np.ndarray, tol: float, name: str) -> None:
    rng = np.random.default_rng(0)
    d = run(jac)
    for _ in range(3):
        _close(run(jac[rng.permutation(len(jac))]), d, tol, tol, f"{name}: permuted rows")


def _linear_under_scaling(run: Runner, jac: np.ndarray, tol: float, name: str) -> None:
    rng = np.random.default_rng(0)
    for _ in range(2):
        c1, c2 = rng.random(len(jac)), rng.random(len(jac))
        alpha, beta = rng.random(), rng.random()
        expected = alpha * run(c1[:, None] * jac) + beta * run(c2[:, None] * jac)
        actual = run((alpha * c1 + beta * c2)[:, None] * jac)
        _close(actual, expected, tol, tol, f"{name}: not linear under row scaling")


def _strongly_stationary(run: Runner, jac: np.ndarray, threshold: float, name: str) -> None:
    assert np.linalg.norm(run(jac)) > threshold, f"{name}: zero on a non-stationary matrix"


def _each(matrices: dict[str, np.ndarray], check: Callable[..., None], run: Runner, tol: float):
    for name, jac in matrices.items():
        check(run, jac, tol, name)


@pytest.mark.parametrize("jit", JIT)
@pytest.mark.parametrize("method", sorted(FACTORIES))
def test_expected_structure(method: str, jit: bool) -> None:
    run = Runner(FACTORIES[method], jit)
    for name, jac in {**matrices("typical", jit), **matrices("scaled", jit)}.items():
        d = run(jac)
        assert d.shape == (jac.shape[1],), name
        assert np.all(np.isfinite(d)), f"{method} on {name}: {d}"


@pytest.mark.parametrize("jit", JIT)
def test_nash_mtl_expected_structure(jit: bool) -> None:
    # torchjd checks NashMTL on unscaled matrices with >= 2 rows only.
    run = Runner(w.NashMTL, jit)
    for name, jac in matrices("typical", jit, min_rows=2).items():
        assert np.all(np.isfinite(run(jac))), name


NON_CONFLICTING = {
    "upgrad": (w.UPGrad, 4e-4),
    "dualproj": (w.DualProj, 1e-4),
    "mgda": (w.MGDA, 4e-4),
    "cagrad_c1": (lambda: w.CAGrad(c=1.0), 4e-4),
    "cagrad_c2": (lambda: w.CAGrad(c=2.0), 4e-4),
}
PERMUTATION = {
    "upgrad": (w.UPGrad, 5e-7),
    "dualproj": (w.DualProj, 2e-7),
    "mgda": (w.MGDA, 1e-4),
    "config": (w.ConFIG, 1e-4),
    "imtlg": (w.IMTLG, 1e-4),
    "aligned_mtl": (w.AlignedMTL, 1e-4),
}
LINEAR = {"upgrad": (w.UPGrad, 6e-2), "config": (w.ConFIG, 1e-4)}
STATIONARY = {"upgrad": (w.UPGrad, 5e-3), "dualproj": (w.DualProj, 3e-3)}


@pytest.mark.parametrize("jit", JIT)
@pytest.mark.parametrize("method", sorted(NON_CONFLICTING))
def test_non_conflicting(method: str, jit: bool) -> None:
    make, tol = NON_CONFLICTING[method]
    _each(matrices("typical", jit), _non_conflicting, Runner(make, jit), tol)


@pytest.mark.parametrize("jit", JIT)
@pytest.mark.parametrize("method", sorted(PERMUTATION))
def test_permutation_invariant(method: str, jit: bool) -> None:
    make, tol = PERMUTATION[method]
    _each(matrices("typical", jit), _permutation_invariant, Runner(make, jit), tol)


@pytest.mark.parametrize("jit", JIT)
@pytest.mark.parametrize("method", sorted(LINEAR))
def test_linear_under_scaling(method: str, jit: bool) -> None:
    make, tol = LINEAR[method]
    _each(matrices("typical", jit), _linear_under_scaling, Runner(make, jit), tol)


@pytest.mark.parametrize("jit", JIT)
@pytest.mark.parametrize("method", sorted(STATIONARY))
def test_strongly_stationary(method: str, jit: bool) -> None:
    make, threshold = STATIONARY[method]
    _each(matrices("non_strong", jit), _strongly_stationary, Runner(make, jit), threshold)


@pytest.mark.parametrize("jit", [False, True])
def test_config_matches_pinv_on_dependent_rows(jit: bool) -> None:
    # Regression (#13.12): dependent rows collapsed ConFIG to ~1e-7 noise
    # (1e21 under XLA), and a 5 x 4 Jacobian gave exactly zero.
    rng = np.random.default_rng(3)
    cases = {
        "rank2_4x3": rng.normal(size=(4, 2)) @ rng.normal(size=(2, 3)),
        "rank5_20x10": rng.normal(size=(20, 5)) @ rng.normal(size=(5, 10)),
        "wide_5x4": rng.normal(size=(5, 4)),
    }
    run = Runner(w.ConFIG, jit)
    for name, jac in cases.items():
        jac = jac.astype(np.float32)
        units = jac / np.linalg.norm(jac, axis=1, keepdims=True)
        rcond = max(jac.shape) * np.finfo(np.float32).eps
        best = np.linalg.pinv(units.astype(np.float64), rcond=rcond) @ np.ones(len(jac))
        e = best / np.linalg.norm(best)
        expected = np.sum(jac @ e) * e
        _close(run(jac), expected, 1e-5, 1e-4, name)
        _close(run(1e6 * jac), 1e6 * expected, 1e1, 1e-4, f"{name} * 1e6")


@pytest.mark.parametrize("jit", [False, True])
def test_cagrad_c1_is_zero_when_zero_is_in_the_hull(jit: bool) -> None:
    # Regression (#13.12): r stopped at ~3e-4 and a conflicting d of norm
    # ~0.3 came out; the docstring promises zeros.
    strong = group("typical")["strong_20x10r10"]
    run = Runner(lambda: w.CAGrad(c=1.0), jit)
    np.testing.assert_array_equal(run(strong), np.zeros(strong.shape[1]))
    opposite = np.array([[1.0, 2.0, -1.0], [-2.0, -4.0, 2.0], [0.5, 0.0, 1.0], [-1.0, 0.0, -2.0]])
    np.testing.assert_array_equal(run(opposite), np.zeros(3))


@pytest.mark.parametrize("method", sorted(FACTORIES))
def test_the_steps_solver_is_finite_everywhere(method: str) -> None:
    """What a step without XLA on CPU runs (`solver()` with `jit_solver`:
    the Gramian and the direction on TensorFlow's kernels, the small solve
    as an XLA cluster; for CAGrad and ConFIG the float32 Gramian when it is
    well conditioned) is finite on the typical and scaled matrices: a NaN
    here would stop or skip a training step as a non-finite gradient."""
    solvers: dict[int, Any] = {}  # one aggregator (one XLA compilation) per number of tasks
    for name, jac in {**matrices("typical", True), **matrices("scaled", True)}.items():
        if jac.shape[0] not in solvers:
            agg = build(FACTORIES[method](), jac.shape[0])
            agg.jit_solver = True
            solvers[jac.shape[0]] = tf.function(agg.solver())
        direction, weights = solvers[jac.shape[0]](tf.constant(jac))
        assert np.all(np.isfinite(direction.numpy())), f"{method} on {name}"
        assert np.all(np.isfinite(weights.numpy())), f"{method} on {name}: weights"
