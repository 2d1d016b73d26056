"""The speed-up model and byte accounting of benchmarks/multi_worker.py."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

PATH = pathlib.Path(__file__).parents[2] / "benchmarks" / "multi_worker.py"
spec = importlib.util.spec_from_file_location("multi_worker_benchmark", PATH)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_classify_scales_the_gathered_block():
    per_replica = {"gradients": 400_000, "jacobian_all_reduce": 800_000,
                   "jacobian_all_gather": 65_536, "scalars": 52}  # fmt: skip
    # A report from before metric_sync has no metric-state bytes: 0.
    expected = dict(per_replica, jacobian_all_gather=131_072, metric_states=0)
    assert bench.classify(per_replica, workers=2) == expected
    # The metric states are all-reduced like gradients: they count in the model.
    volumes = dict(expected, scalars=0)
    assert bench.speedup(1.0, dict(volumes, metric_states=1e9), 2, 10) < bench.speedup(
        1.0, volumes, 2, 10
    )


def test_speedup_model():
    volumes = {"gradients": 40e6, "jacobian_all_reduce": 0, "jacobian_all_gather": 0, "scalars": 0}
    # 1 s of compute, 40 MB of gradients: at 100 Gb/s two workers take
    # 0.5 s + 2*(1/2)*40e6/12.5e9 s + latency.
    expected = 1.0 / (0.5 + 40e6 / 12.5e9 + 2 * bench.LATENCY_S * 3)
    assert bench.speedup(1.0, volumes, 2, 100) == pytest.approx(expected)
    # More bytes or less bandwidth never helps; more workers help while compute dominates.
    heavier = dict(volumes, jacobian_all_reduce=400e6)
    assert bench.speedup(1.0, heavier, 8, 10) < bench.speedup(1.0, volumes, 8, 10)
    assert bench.speedup(1.0, volumes, 8, 10) < bench.speedup(1.0, volumes, 8, 100)
    assert bench.speedup(1.0, volumes, 8, 100) > bench.speedup(1.0, volumes, 2, 100)
