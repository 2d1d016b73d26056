"""One MWMS worker of the fault-tolerance test (run twice by the test).

Trains one model per weighting strategy, interleaved epoch by epoch, each
with `mtl_keras.distribute.BackupAndRestore`. On the first run worker 1
SIGKILLs itself in the middle of epoch 1 of the last model; the launcher
stops the chief. The second run restores every model (the chief's backup is
authoritative, agreement checked), finishes training, writes chief-only
files (TaskTensorBoard, ChiefModelCheckpoint, export) and a report with the
restored epochs, the strategy state and (chief) the difference of the
weights and of the strategy state to uninterrupted single-device training.

The restarted job then runs the 2-worker equality checks of mw_checks.py
for the configuration names given (one worker pair for both tests).

    python mw_resume.py OUT_DIR [name1,name2,... [--extras]]
"""

from __future__ import annotations

import json
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf

out_dir = sys.argv[1]
strategy = tf.distribute.MultiWorkerMirroredStrategy()
index = int(os.environ["MTL_KERAS_WORKER"])

import mtl_keras as mk  # noqa: E402
from mtl_keras import distribute  # noqa: E402
from mtl_keras.distribute.backup import BackupAndRestore  # noqa: E402
from mtl_keras.distribute.chief import ChiefModelCheckpoint, export_saved_model  # noqa: E402

NAMES = ["uncertainty", "dwa", "famo", "gradvac", "nash_mtl"]
EPOCHS, BATCH = 2, 32
rng = np.random.default_rng(0)
x = rng.normal(size=(96, 6)).astype("float32")
y = {
    "click": (x[:, 0] > 0).astype("float32"),
    "dwell": (x[:, 1] - x[:, 2]).astype("float32"),
}
marker = os.path.join(out_dir, "killed")


def dataset():
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)


def build(name: str, distribute_: bool):
    scope = strategy.scope() if distribute_ else tf.distribute.get_strategy().scope()
    with scope:
        keras.utils.set_random_seed(0)
        tasks = [mk.Binary("click"), mk.Regression("dwell")]
        model = mk.builders.shared_bottom(
            keras.Input((6,), name="x"), tasks, trunk_units=(8,), tower_units=(4,)
        )
        model.compile(keras.optimizers.SGD(0.05), weighting=name, jit_compile=False)
    return model


class KillMidEpoch(keras.callbacks.Callback):
    """Worker 1 dies (SIGKILL) at batch 1 of epoch 1 (the last), once."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if index == 1 and self.epoch == 1 and batch == 1 and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)


models = {name: build(name, True) for name in NAMES}
backups = {
    n: BackupAndRestore(os.path.join(out_dir, "backup", n), delete_checkpoint=False) for n in NAMES
}
restored: dict[str, list[int]] = {n: [] for n in NAMES}
for epoch in range(EPOCHS):
    for name in NAMES:
        callbacks = [backups[name]]
        if name == NAMES[-1]:
            callbacks.append(KillMidEpoch())
        models[name].fit(
            dataset(), initial_epoch=epoch, epochs=epoch + 1, verbose=0, callbacks=callbacks
        )
        restored[name].append(backups[name].restored_epoch)

report = {"restored": restored, "diff": {}, "state": {}, "state_diff": {}}
for name in NAMES:
    report["state"][name] = [v.numpy().tolist() for v in models[name].weighting.weights]

# Chief-only files: every worker runs them, only the chief's copies remain.
model = build("static", True)
files = os.path.join(out_dir, "files")
model.fit(
    dataset(),
    epochs=1,
    verbose=0,
    callbacks=[
        mk.callbacks.TaskTensorBoard(os.path.join(files, "tb")),
        ChiefModelCheckpoint(os.path.join(files, "ckpt", "model.keras")),
    ],
)
report["export"] = export_saved_model(model, os.path.join(files, "export"))
report["is_chief"] = distribute.is_chief(strategy)

# The restarted job reuses its worker pair for the equality checks
# (mw_checks.py; the test passes the configuration names).
if len(sys.argv) > 2:
    import mw_checks

    equality = os.path.join(out_dir, f"equality{index}.json")
    mw_checks.run(strategy, sys.argv[2].split(","), equality, "--extras" in sys.argv[3:])

# Uninterrupted single-device training, on the chief only (no collectives
# left; the other workers' states are compared with the chief's).
if report["is_chief"]:
    for name in NAMES:
        single = build(name, False)
        single.fit(dataset(), epochs=EPOCHS, verbose=0)
        pairs = list(zip(models[name].weights, single.weights))
        report["diff"][name] = max(float(np.max(np.abs(u.numpy() - v.numpy()))) for u, v in pairs)
        pairs = list(zip(models[name].weighting.weights, single.weighting.weights))
        report["state_diff"][name] = max(
            [float(np.max(np.abs(u.numpy() - v.numpy()))) for u, v in pairs] or [0.0]
        )
with open(os.path.join(out_dir, f"worker{index}.json"), "w") as f:
    json.dump(report, f)
