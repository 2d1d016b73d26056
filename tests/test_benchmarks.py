"""Smoke test of `benchmarks/weighting_speed.py`: it runs and prints its table."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).parents[1] / "benchmarks" / "weighting_speed.py"


@pytest.mark.slow
def test_weighting_speed_quick_subset() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--tasks", "2", "--only", "upgrad@rep", "famo"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {
        line.split("|")[1].strip(): line
        for line in proc.stdout.splitlines()
        if line.startswith("| ") and not line.startswith("| strategy")
    }
    assert set(rows) == {"static", "famo", "upgrad@rep"}
    ratio = float(rows["upgrad@rep"].split("|")[2])
    assert 0.2 < ratio < 20.0


def test_weighting_speed_rejects_a_missing_torch_interpreter() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--torch-python", "/nonexistent/python"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "--torch-python /nonexistent/python: not an executable file" in proc.stderr


@pytest.mark.slow
def test_cost_curves_quick_point(tmp_path) -> None:
    script = pathlib.Path(__file__).parents[1] / "benchmarks" / "cost_curves.py"
    png = tmp_path / "curves.png"
    proc = subprocess.run(
        [sys.executable, str(script), "--quick", "--tasks", "2", "--widths", "32",
         "--width-for-tasks", "32", "--tasks-for-widths", "2", "--no-memory", "--png", str(png)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| 2 | 32 |"))
    times = [float(c) for c in row.strip("|").split("|")[3:]]
    assert len(times) == 4 and all(t > 0 for t in times)
    assert png.stat().st_size > 10_000
