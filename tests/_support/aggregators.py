"""Shared helpers of the gradient-aggregator tests (issue #3).

The reference values come from `tests/weighting/fixtures/torchjd_reference.json`,
written by `tests/weighting/fixtures/generate_torchjd.py` in a separate process (torch is never imported
here).
"""

from __future__ import annotations

import functools
import json
import pathlib
from typing import Any

import numpy as np
import tensorflow as tf

import mtl_keras as mk
from mtl_keras.weighting.base import GradientAggregator

FIXTURES = pathlib.Path(__file__).parents[1] / "weighting" / "fixtures" / "torchjd_reference.json"


@functools.cache
def reference() -> dict[str, Any]:
    return json.loads(FIXTURES.read_text())


def matrix(name: str) -> np.ndarray:
    return np.asarray(reference()["matrices"][name], np.float32)


def cases(method: str) -> list[str]:
    return sorted(reference()["methods"][method]["results"])


def build(aggregator: GradientAggregator, num_tasks: int) -> GradientAggregator:
    """Creates the aggregator's state for `num_tasks` dummy tasks."""
    aggregator.build_for_tasks([mk.Regression(f"t{i}") for i in range(num_tasks)])
    return aggregator


def run(aggregator: GradientAggregator, jac: Any, jit: bool = True) -> np.ndarray:
    """`aggregate` under `tf.function(jit_compile=True)` (or eagerly)."""
    jac = tf.constant(np.asarray(jac, np.float32))
    fn = tf.function(aggregator.aggregate, jit_compile=True) if jit else aggregator.aggregate
    return np.asarray(fn(jac))


def assert_close(actual: Any, expected: Any, rtol: float = 1e-4) -> None:
    """Relative 1e-4, with an absolute floor scaled to the vector (near-zero entries)."""
    expected = np.asarray(expected, np.float64)
    atol = 1e-6 + 1e-5 * float(np.max(np.abs(expected), initial=0.0))
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=rtol, atol=atol)


def check_parity(method: str, make: Any, case: str, stateful: bool = False) -> None:
    spec = reference()["methods"][method]
    expected = spec["results"][case]
    jac = matrix(case)
    agg = make()
    if stateful:
        build(agg, jac.shape[0])
    assert_close(run(agg, jac), expected)


def random_matrix(shape: tuple[int, int], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)
