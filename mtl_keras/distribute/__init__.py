"""Multi-worker training on `tf.distribute.MultiWorkerMirroredStrategy`.

- `cluster`: `TF_CONFIG`, free loopback ports, chief-only write paths.
- `keras_fixes`: what `MultiTaskModel` needs to `fit`/`evaluate` under MWMS
  in Keras 3 (keras-team/keras#20585).
- `shuffle`: a seeded shuffle every worker agrees on.
- `chief`: checkpoints and SavedModel exports only the chief keeps.
- `backup`: `BackupAndRestore` with per-worker files and an agreement check.
- `launch`: `python -m mtl_keras.distribute.launch --workers 2 script.py`.

Example (every worker runs the same script; `TF_CONFIG` says who is who):
>>> from mtl_keras.distribute import cluster
>>> config = cluster.tf_config(cluster.loopback_addresses(2), index=1)
>>> len(config["cluster"]["worker"]), config["task"]
(2, {'type': 'worker', 'index': 1})

Each worker then trains under the strategy. Skipped here: creating a
`MultiWorkerMirroredStrategy` configures the process's collective runtime
once for good (the other tests run in the same process) and blocks until
every worker of `TF_CONFIG` has joined; tests/distribute runs it in worker
subprocesses.

>>> import tensorflow as tf  # doctest: +SKIP
>>> strategy = tf.distribute.MultiWorkerMirroredStrategy()  # doctest: +SKIP
>>> with strategy.scope():  # doctest: +SKIP
...     model = build_model(); model.compile("sgd", weighting="upgrad")
>>> model.fit(dataset, epochs=3)  # doctest: +SKIP
"""

from mtl_keras.distribute.backup import BackupAndRestore, RestoreMismatchError
from mtl_keras.distribute.chief import ChiefModelCheckpoint
from mtl_keras.distribute.cluster import (
    free_ports,
    is_chief,
    is_multi_worker,
    loopback_addresses,
    remove_if_temporary,
    tf_config,
    write_path,
)

__all__ = [
    "BackupAndRestore",
    "ChiefModelCheckpoint",
    "RestoreMismatchError",
    "free_ports",
    "is_chief",
    "is_multi_worker",
    "loopback_addresses",
    "remove_if_temporary",
    "tf_config",
    "write_path",
]
