"""`BackupAndRestore` for MultiWorkerMirroredStrategy: per-worker files,
the chief's authoritative, and a check that every worker restored the same state.

Keras's callback writes `latest.weights.h5` into one directory from every
worker, which fails on the HDF5 file lock at the first save, and each
worker restoring its own file is never compared (a worker on another epoch
ends in an unrelated collective error much later). Here the chief writes to
`backup_dir` and worker i to `backup_dir + ".worker<i>"`; on restart every
worker restores from the chief's directory when it can read it (shared file
system), else from its own, and then all workers compare the restored
epoch and a fingerprint of every weight (model, weighting strategy state,
optimizer) in one all-reduce: if any differs, all raise.
"""

from __future__ import annotations

import os
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from mtl_keras.distribute.cluster import is_chief, is_multi_worker, task


class RestoreMismatchError(RuntimeError):
    """Workers restored different training states."""


@keras.saving.register_keras_serializable(package="mtl_keras")
class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` that works under MWMS (see module doc).

    On one worker it behaves exactly like Keras's callback.

    Args:
        backup_dir: the chief's backup directory (other workers use
            `backup_dir + ".worker<i>"`).
        **kwargs: passed to `keras.callbacks.BackupAndRestore` (`save_freq`,
            `double_checkpoint`, `delete_checkpoint`).

    Example:
    >>> cb = BackupAndRestore("/tmp/run/backup")
    """

    def __init__(self, backup_dir: str, **kwargs: Any) -> None:
        super().__init__(backup_dir, **kwargs)
        self._chief_dir = str(backup_dir)
        self._kwargs = kwargs
        #: epoch this worker restored at the last `fit` start (0: none)
        self.restored_epoch = 0

    def _use_dir(self, directory: str) -> None:
        self.backup_dir = directory
        self._weights_path = os.path.join(directory, "latest.weights.h5")
        self._training_metadata_path = os.path.join(directory, "training_metadata.json")
        self._prev_weights_path = f"{self._weights_path}.bkp"
        self._prev_training_metadata_path = f"{self._training_metadata_path}.bkp"

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        strategy = self.model.distribute_strategy
        if not is_multi_worker(strategy):
            self._use_dir(self._chief_dir)
            super().on_train_begin(logs)
            self.restored_epoch = int(self.model._initial_epoch or 0)
            return
        own = self._chief_dir
        if not is_chief(strategy):
            own = f"{self._chief_dir.rstrip(os.sep)}.worker{task()[1]}"
        chief_state = os.path.join(self._chief_dir, "training_metadata.json")
        # The chief's backup is authoritative when this worker can read it.
        self._use_dir(self._chief_dir if os.path.exists(chief_state) else own)
        super().on_train_begin(logs)
        self._use_dir(own)
        self.restored_epoch = int(self.model._initial_epoch or 0)
        check_agreement(self.model, self.restored_epoch)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        super().on_epoch_begin(epoch, logs)
        self._forget_initial_epoch()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_end(logs)
        self._forget_initial_epoch()

    def _forget_initial_epoch(self) -> None:
        # Keras's restore sets `model._initial_epoch`, which `fit` reads once
        # (right after on_train_begin) and never clears: a later `fit` on the
        # same model would start at the restored epoch and skip epochs
        # (or all of them) silently.
        if self.model is not None:
            self.model._initial_epoch = None

    def get_config(self) -> dict[str, Any]:
        return {"backup_dir": self._chief_dir, **self._kwargs}


def state_fingerprint(model: keras.Model) -> np.ndarray:
    """float64 (sum, sum of squares) of every model and optimizer variable."""
    variables = list(model.weights)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and optimizer.built:
        variables += list(optimizer.variables)
    values = []
    for v in variables:
        a = np.asarray(keras.ops.convert_to_numpy(v.value), dtype=np.float64)
        values += [a.sum(), np.square(a).sum()]
    return np.asarray(values, dtype=np.float64)


def check_agreement(model: keras.Model, epoch: int) -> None:
    """Raises `RestoreMismatchError` on every worker unless all restored the
    same epoch and the same weights (two all-reduces over the workers)."""
    strategy = model.distribute_strategy
    local = np.concatenate([[float(epoch)], state_fingerprint(model)])
    n = strategy.num_replicas_in_sync

    def replica_sum(value: np.ndarray) -> np.ndarray:
        per_replica = strategy.run(lambda: tf.constant(value, tf.float64))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None).numpy()

    # Each worker's flag is counted once per local replica.
    local_replicas = len(strategy.extended.worker_devices)
    mean = replica_sum(local) / n
    differs = ~np.isclose(mean, local, rtol=1e-9, atol=1e-12)
    flags = replica_sum(np.asarray([float(differs.any())])) / local_replicas
    if flags[0] > 0:
        _, index = task()
        raise RestoreMismatchError(
            f"BackupAndRestore: workers restored different training states ({int(flags[0])} "
            f"worker(s) disagree with the mean); worker {index} restored epoch {epoch} "
            f"(workers' mean epoch {mean[0]:g}). Give every worker the chief's backup "
            "directory (a shared file system) or delete all backups to start over."
        )
