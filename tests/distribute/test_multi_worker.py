"""MultiTaskModel under MultiWorkerMirroredStrategy: 2 worker processes on
127.0.0.1 (TF_CONFIG from the launcher) train, evaluate and predict exactly
like one process on the same global batches (issue #14)."""

from __future__ import annotations

import pytest
from distribute_helpers import HERE, run_launch, worker_reports

#: a representative set: loss weightings with state, projection, rep_grad
#: aggregators (one on a 2-tensor MMoE representation), solver-based ones,
#: and arrays with shuffle=True (seeded by MultiTaskModel.fit)
STRATEGIES = [
    "static~shuffle",
    "uncertainty",
    "famo",
    "pcgrad",
    "upgrad@rep",
    "upgrad@rep+mmoe",
    "nash_mtl",
]


@pytest.mark.slow
def test_two_workers_match_single_process(tmp_path):
    out = run_launch([str(HERE / "mw_worker.py"), str(tmp_path), ",".join(STRATEGIES)], timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    chief, other = worker_reports(tmp_path, 2)
    for report in (chief, other):
        assert not report["errors"], report["errors"]
        far = {k: v for k, v in report["diff"].items() if v > 1e-5}
        assert not far, report["diff"]
    # Every worker ends with the same weights.
    assert chief["checksum"] == other["checksum"]
    # evaluate: identical logs everywhere and equal to one process (global metrics).
    multi, single = chief["evaluate"]
    assert multi == other["evaluate"][0]
    assert multi.keys() == single.keys()
    for key in multi:
        assert multi[key] == pytest.approx(single[key], abs=1e-5), key
    # predict: all rows of the global input, in order, on every worker.
    assert chief["predict_rows"] == other["predict_rows"] == 192
    assert chief["predict_diff"] < 1e-5
    assert "steps_per_execution=2 is not supported" in chief["steps_per_execution_error"]
    assert "[worker 0]" in out.stdout and "[worker 1]" in out.stdout
