"""A 2-worker Ray Train job (`ray.train.tensorflow.TensorflowTrainer`) with
mtl_keras on this machine: Ray sets TF_CONFIG, the workers train under
MultiWorkerMirroredStrategy and match one process (issue #14). Skipped
without ray (`pip install mtl_keras[distributed]`)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys

import pytest
from distribute_helpers import HERE

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="ray is not installed (extra: distributed)"
)


@pytest.mark.slow
def test_ray_tensorflow_trainer_two_workers(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "RAY_AUTH_MODE": "disabled"}
    # Its own process: the driver must not share a process with TensorFlow
    # state from other tests; Ray's workers import TensorFlow themselves.
    job = subprocess.Popen(
        [sys.executable, str(HERE / "ray_job.py"), str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,  # on timeout, Ray's processes go with the job
    )
    try:
        output, _ = job.communicate(timeout=420)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        output, _ = job.communicate()
    assert job.returncode == 0, output[-5000:]
    reports = [json.loads((tmp_path / f"ray_worker{r}.json").read_text()) for r in (0, 1)]
    for report in reports:
        assert report["workers"] == 2
        assert report["diff"] < 1e-5
        multi, single = report["evaluate"]
        for key, value in single.items():
            assert multi[key] == pytest.approx(value, abs=1e-5), key
    assert reports[0]["checksum"] == reports[1]["checksum"]
