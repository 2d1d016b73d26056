"""Cluster facts from `TF_CONFIG`, loopback configs and chief-only paths.

`TF_CONFIG` is what Kubernetes TFJob, Vertex AI, Ray Train's
`TensorflowTrainer` and `mtl_keras.distribute.launch` set on every worker:

    {"cluster": {"worker": ["host0:port", "host1:port"]},
     "task": {"type": "worker", "index": 0}}

Example:
>>> from mtl_keras.distribute import cluster
>>> cluster.tf_config(["127.0.0.1:2222", "127.0.0.1:2223"], 1)["task"]
{'type': 'worker', 'index': 1}
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
from typing import Any


def tf_config(addresses: list[str], index: int, task_type: str = "worker") -> dict[str, Any]:
    """The `TF_CONFIG` dict of worker `index` in a cluster of `addresses`.

    Args:
        addresses: "host:port" of every worker, the chief (index 0) first.
        index: this process's index in `addresses`.
        task_type: "worker" (MultiWorkerMirroredStrategy's worker 0 is the chief).
    """
    if not 0 <= index < len(addresses):
        raise ValueError(f"worker index {index} is outside the cluster of {len(addresses)}.")
    return {"cluster": {task_type: list(addresses)}, "task": {"type": task_type, "index": index}}


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct TCP ports free on `host` right now (bound then released)."""
    sockets, ports = [], []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, 0))
            sockets.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in sockets:
            s.close()
    return ports


def loopback_addresses(count: int) -> list[str]:
    """`count` "127.0.0.1:port" addresses on free ports."""
    return [f"127.0.0.1:{p}" for p in free_ports(count)]


def current_config() -> dict[str, Any] | None:
    """This process's parsed `TF_CONFIG`, or None when unset or empty."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON ({e}): {raw[:200]!r}") from e
    return config or None


def num_workers() -> int:
    """Workers (chief included) listed in `TF_CONFIG`; 1 without it."""
    config = current_config()
    if not config:
        return 1
    cluster = config.get("cluster", {})
    return sum(len(cluster.get(k, [])) for k in ("chief", "worker")) or 1


def task() -> tuple[str, int]:
    """(task type, index) of this process; ("worker", 0) without `TF_CONFIG`."""
    config = current_config() or {}
    t = config.get("task", {})
    return t.get("type", "worker"), int(t.get("index", 0))


def is_chief(strategy: Any = None) -> bool:
    """Whether this process writes the job's files (TF's convention).

    The chief is the "chief" task if the cluster has one, else worker 0.
    With a strategy, its own cluster resolver is asked (what Keras and
    `tf.distribute` use); without one, `TF_CONFIG` is read.
    """
    extended = getattr(strategy, "extended", None)
    if extended is not None and hasattr(extended, "_in_multi_worker_mode"):
        if not extended._in_multi_worker_mode():
            return True
        resolver = extended._cluster_resolver
        task_type, task_id = resolver.task_type, resolver.task_id
        has_chief = "chief" in resolver.cluster_spec().as_dict()
    else:
        task_type, task_id = task()
        has_chief = "chief" in ((current_config() or {}).get("cluster") or {})
    if task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and not has_chief


def is_multi_worker(strategy: Any) -> bool:
    """Whether `strategy` synchronises several worker processes (MWMS)."""
    extended = getattr(strategy, "extended", None)
    check = getattr(extended, "_in_multi_worker_mode", None)
    return bool(check and check())


def write_path(path: str, strategy: Any = None) -> str:
    """Where this worker writes a file or directory meant to go to `path`.

    The chief writes to `path`; other workers write to a private temporary
    directory (remove it with `remove_if_temporary`). Every worker must run
    the save (it may contain collectives); only the chief's copy is kept, as
    TensorFlow recommends for MultiWorkerMirroredStrategy.

    Args:
        path: the destination on the chief.
        strategy: the distribution strategy (default: the current one).

    Example:
    >>> target = write_path("saved_models/m")  # "saved_models/m" on the chief
    """
    if strategy is None:
        import tensorflow as tf

        strategy = tf.distribute.get_strategy()
    if not is_multi_worker(strategy) or is_chief(strategy):
        return path
    _, index = task()
    # One private directory per (worker process, path): repeated calls agree.
    digest = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:10]
    base = os.path.join(tempfile.gettempdir(), f"mtl_keras_worker{index}_{os.getpid()}_{digest}")
    os.makedirs(base, exist_ok=True)
    return os.path.join(base, os.path.basename(os.path.normpath(path)) or "out")


def remove_if_temporary(written: str, path: str) -> None:
    """Removes `written` (from `write_path(path)`) unless it is `path` itself."""
    if os.path.normpath(written) == os.path.normpath(path):
        return
    shutil.rmtree(os.path.dirname(written), ignore_errors=True)
