"""SIGKILL mid-epoch, resume with BackupAndRestore, compare with an
uninterrupted run (issue #13, item 14).

Three subprocesses (`resume_worker.py`): a reference run of every stateful
strategy; an interrupted run in which every strategy's fit (each in its own
thread, one after the other) blocks in the middle of epoch 1, after the
epoch-0 backup, and the process is then SIGKILLed by the parent (signalled
by the worker, no sleeps): all seven strategies and their
`MultiTaskObjective` callbacks die by a real SIGKILL mid-epoch; and a
resumed run from the backups. With epoch-level backups the resumed run must
end with the reference's model weights, strategy state and
`MultiTaskObjective` value (its baseline survives through `state_path`).
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys

import numpy as np
import pytest

WORKER = pathlib.Path(__file__).with_name("resume_worker.py")
STRATEGIES = ["uncertainty", "dwa", "famo", "gradnorm", "nash_mtl", "rlw", "gradvac"]
TIMEOUT = 600


def _run(mode: str, workdir: pathlib.Path, kill: bool = False) -> None:
    cmd = [sys.executable, str(WORKER), mode, str(workdir), *STRATEGIES]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    log = workdir / f"{mode}.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env, text=True)
    if not kill:
        proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, log.read_text()[-3000:]
        return
    try:
        for line in proc.stdout:  # blocks until the worker signals
            if line.strip() == "KILL-ME":
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, log.read_text()[-3000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> pathlib.Path:
    workdir = tmp_path_factory.mktemp("resume")
    _run("reference", workdir)
    _run("interrupt", workdir, kill=True)
    for name in STRATEGIES:  # interrupted mid-epoch: nothing finished
        assert not (workdir / f"interrupt-{name}.npz").exists()
        assert (workdir / f"backup-{name}").exists()
    _run("resume", workdir)
    return workdir


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_resumed_run_matches_the_uninterrupted_one(runs: pathlib.Path, strategy: str) -> None:
    ref = np.load(runs / f"reference-{strategy}.npz")
    got = np.load(runs / f"resume-{strategy}.npz")
    assert sorted(ref.files) == sorted(got.files)
    # The resumed fit really started from the epoch-0 backup (not from scratch).
    assert (int(ref["epochs_run"]), int(got["epochs_run"])) == (3, 2)
    state = [k for k in ref.files if k.startswith("s:")]
    assert state or strategy == "gradvac", ref.files  # the strategy's variables are compared
    for key in set(ref.files) - {"epochs_run"}:
        np.testing.assert_allclose(got[key], ref[key], rtol=1e-6, atol=1e-7, err_msg=key)
