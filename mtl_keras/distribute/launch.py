"""Run one script as N MultiWorkerMirroredStrategy workers on this machine.

    python -m mtl_keras.distribute.launch --workers 2 train.py [script args]
    python -m mtl_keras.distribute.launch --workers 2 -m my_package.train [args]
    mtl-keras launch --workers 2 train.py [script args]

Like `torchrun` for trying things on one host: every worker gets a
`TF_CONFIG` on free loopback ports (worker 0 is the chief) and
`MTL_KERAS_WORKER=<index>`; each output line is prefixed with `[worker i]`.
MultiWorkerMirroredStrategy is synchronous, so a lost worker stalls the
others: when one worker exits with an error (or `--timeout` passes), the
launcher stops all the others (SIGTERM, then SIGKILL) and exits with the
failed worker's code (124 on timeout). Restart the job to resume from the
last `BackupAndRestore` backup. On a real cluster the orchestrator
(Kubernetes TFJob, Vertex AI, Ray Train) sets `TF_CONFIG` and restarts the
job instead; the script stays the same.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import IO

from mtl_keras.distribute.cluster import loopback_addresses, tf_config

TIMEOUT_EXIT = 124


def _pump(stream: IO[str], prefix: str, out: IO[str], lock: threading.Lock) -> None:
    for line in iter(stream.readline, ""):
        with lock:
            out.write(prefix + line if line.endswith("\n") else prefix + line + "\n")
            out.flush()
    stream.close()


def _stop(procs: list[subprocess.Popen], grace: float = 5.0) -> None:
    """SIGTERM the running workers' process groups, SIGKILL after `grace` s."""
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


def launch(
    command: list[str],
    workers: int = 2,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
    out: IO[str] | None = None,
) -> int:
    """Runs `command` (argv) as `workers` MWMS workers on loopback ports.

    Args:
        command: the argv every worker runs, e.g. `[sys.executable, "train.py"]`.
        workers: number of worker processes.
        timeout: seconds after which all workers are stopped (exit 124).
        env: base environment (default: this process's).
        out: where prefixed output goes (default: stdout).

    Returns:
        0 when every worker succeeded, else the first failing worker's exit
        code (a signal's negative number is returned as 128 + signal).

    Example:
    >>> import io
    >>> out = io.StringIO()
    >>> launch([sys.executable, "-c", "print('hi')"], workers=2, out=out)
    0
    >>> sorted(out.getvalue().splitlines())  # workers interleave freely
    ['[worker 0] hi', '[worker 1] hi']
    """
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}.")
    out = out or sys.stdout
    base = dict(os.environ if env is None else env)
    addresses = loopback_addresses(workers)
    lock = threading.Lock()
    procs, pumps = [], []
    for i in range(workers):
        worker_env = {
            **base,
            "TF_CONFIG": json.dumps(tf_config(addresses, i)),
            "MTL_KERAS_WORKER": str(i),
            "PYTHONUNBUFFERED": "1",
        }
        p = subprocess.Popen(
            command,
            env=worker_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,  # its own process group, stopped as a whole
        )
        procs.append(p)
        t = threading.Thread(target=_pump, args=(p.stdout, f"[worker {i}] ", out, lock))
        t.daemon = True
        t.start()
        pumps.append(t)
    started = time.monotonic()
    code = 0
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                i, c = failed[0]
                code = 128 - c if c < 0 else c
                with lock:
                    out.write(f"[launch] worker {i} exited with {c}; stopping the others\n")
                break
            if all(c == 0 for c in codes):
                break
            if timeout is not None and time.monotonic() - started > timeout:
                code = TIMEOUT_EXIT
                with lock:
                    out.write(f"[launch] timeout after {timeout:.0f} s; stopping all workers\n")
                break
            time.sleep(0.1)
    finally:
        _stop(procs)
        for t in pumps:
            t.join(timeout=5)
    return code


def parser(prog: str = "python -m mtl_keras.distribute.launch") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Run a training script as N MultiWorkerMirroredStrategy workers on "
        "127.0.0.1 (TF_CONFIG set per worker; output prefixed; all stopped when one fails).",
    )
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=2, help="number of worker processes")
    p.add_argument("--timeout", type=float, default=None, help="stop all workers after S seconds")
    p.add_argument("-m", dest="module", default=None, help="run a module (like python -m)")
    p.add_argument("script", nargs="?", help="the training script every worker runs")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")


def run(args: argparse.Namespace) -> int:
    if args.module:
        rest = ([args.script] if args.script else []) + list(args.args)
        command = [sys.executable, "-m", args.module, *rest]
    elif args.script:
        command = [sys.executable, args.script, *args.args]
    else:
        raise SystemExit("launch: give a script (or -m module) for the workers to run.")
    return launch(command, workers=args.workers, timeout=args.timeout)


def main(argv: list[str] | None = None) -> int:
    return run(parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
