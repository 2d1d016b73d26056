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


def _speed_goals():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import speed_goals
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return speed_goals


def test_goals_table_marks_every_missed_goal() -> None:
    goals = _speed_goals()
    calls = iter([1.0, 2.0, 6.0, 3.0, 3.0, 2.0])  # ours, theirs; theirs, ours; ours, theirs
    ratio, ours, theirs = goals.paired_ratio(lambda: next(calls), lambda: next(calls), 3)
    assert (ratio, ours, theirs) == (0.5, 3.0, 2.0)  # pairs 1/2, 3/6, 3/2
    rows = {
        3: [goals.Row("plain step vs PyTorch", "plain", [0.9, 0.95, 0.99]),
            goals.Row("upgrad@rep vs Static", "rep", [1.2, 1.31, 1.0]),
            goals.Row("cagrad vs torchjd", "torchjd")],
        8: [goals.Row("pcgrad vs torchjd", "torchjd", [0.5, 0.5, 0.5])],
    }  # fmt: skip
    table = goals.markdown(rows, ["# head"]).splitlines()
    assert table[0] == "# head"
    assert "| plain step vs PyTorch | <= 1.0 | 0.90 | 0.95 | 0.99 | yes |" in table
    assert "| upgrad@rep vs Static | <= 1.3 | 1.20 | **1.31** | 1.00 | no |" in table
    assert "| cagrad vs torchjd | <= 1.0 |  |  |  | no |" in table  # unmeasured is not met
    assert table.index("### T = 8") > table.index("### T = 3")


@pytest.mark.slow
def test_weighting_speed_goals_tiny(tmp_path) -> None:
    out = tmp_path / "goals.md"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--goals", "--alt-jit", "--tasks", "2", "--only", "pcgrad",
         "--rounds", "2", "--repeats", "1", "--steps", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = out.read_text().splitlines()
    row = next(line for line in lines if line.startswith("| pcgrad@rep vs Static |"))
    cells = [c.strip().strip("*") for c in row.strip("|").split("|")]
    assert len(cells) == 5 and all(float(c) > 0 for c in cells[2:4])  # 2-step blocks: noise
    assert any(line.startswith("| pcgrad vs torchjd |") for line in lines)
    # --alt-jit: the same comparisons all-XLA and with only the solver compiled.
    for label in ("pcgrad@rep~xla vs Static", "pcgrad@rep~solver vs Static"):
        row = next(line for line in lines if line.startswith(f"| {label} |"))
        assert float(row.split("|")[3].strip().strip("*")) > 0
