"""Running `mtl_keras.distribute.launch` jobs from tests (bounded, loopback only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_launch(
    args: list[str], workers: int = 2, timeout: float = 240.0, env: dict | None = None
) -> subprocess.CompletedProcess:
    """`python -m mtl_keras.distribute.launch --workers N ARGS`, killed after `timeout` s."""
    base = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    command = [
        sys.executable,
        "-m",
        "mtl_keras.distribute.launch",
        "--workers",
        str(workers),
        "--timeout",
        str(timeout),
        *args,
    ]
    # The launcher stops its workers on timeout; the outer bound is a backstop.
    return subprocess.run(command, capture_output=True, text=True, env=base, timeout=timeout + 60)


def worker_reports(out_dir: Path, workers: int, stem: str = "worker") -> list[dict]:
    reports = []
    for i in range(workers):
        path = Path(out_dir) / f"{stem}{i}.json"
        assert path.exists(), f"worker {i} wrote no report"
        reports.append(json.loads(path.read_text()))
    return reports
