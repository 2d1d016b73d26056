"""Training subprocess of `test_resume.py` (issue #13, item 14); not a test.

Usage: `python resume_worker.py MODE WORKDIR STRATEGY...` with MODE one of
- `reference`: every strategy trains `EPOCHS` epochs without interruption;
- `interrupt`: each strategy's fit runs in its own thread, one after the
  other, until the middle of epoch 1 (after the epoch-0 backup), where it
  blocks; once every fit is blocked mid-epoch the worker prints `KILL-ME`
  and the parent SIGKILLs the process: every strategy is killed for real
  in the middle of an epoch (one process, so TensorFlow starts once);
- `resume`: every strategy restarts from its `BackupAndRestore` backup.
Each finished strategy writes `WORKDIR/<mode>-<strategy>.npz` (model weights,
the strategy's variables, the objective's last value and baseline).
"""

from __future__ import annotations

import os
import sys
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf

import mtl_keras as mk
from mtl_keras.callbacks import MultiTaskObjective

EPOCHS, BATCH, ROWS = 3, 16, 64  # 4 batches per epoch
STOP_AT = 6  # global batch index: the middle of epoch 1


class StopMidEpoch(keras.callbacks.Callback):
    """At global batch `STOP_AT`: tell the main thread, then block until SIGKILL."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = 0
        self.reached = threading.Event()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.seen += 1
        if self.seen < STOP_AT:
            return
        self.reached.set()
        while True:  # the parent SIGKILLs the whole process
            time.sleep(0.05)


def data() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(ROWS, 6)).astype("float32")
    y = {
        "click": (x[:, 0] + x[:, 1] > 0).astype("float32"),
        "dwell": (x[:, 1] - 0.5 * x[:, 2]).astype("float32"),
        "spend": (x[:, 3] * x[:, 4]).astype("float32"),
    }
    return x, y


def build(strategy: str) -> mk.MultiTaskModel:
    keras.utils.set_random_seed(0)
    tasks = [mk.Binary("click"), mk.Regression("dwell"), mk.Regression("spend")]
    model = mk.builders.shared_bottom(
        keras.Input((6,), name="x"), tasks, trunk_units=(8,), tower_units=(4,)
    )
    model.compile(
        keras.optimizers.Adam(0.01),
        weighting=strategy,
        metrics={t.name: [] for t in tasks},
    )
    return model


def run(mode: str, workdir: str, strategy: str) -> None:
    model = build(strategy)
    x, y = data()
    backup = os.path.join(workdir, f"backup-{strategy}")
    objective = MultiTaskObjective(
        prefix="", state_path=os.path.join(workdir, f"objective-{mode}-{strategy}.json")
    )
    if mode == "resume":  # the interrupted run's baseline file
        objective.state_path = os.path.join(workdir, f"objective-interrupt-{strategy}.json")
    callbacks: list = [objective, keras.callbacks.BackupAndRestore(backup)]
    if mode == "interrupt":
        stop = StopMidEpoch()
        callbacks.append(stop)
        fit = threading.Thread(
            target=model.fit,
            args=(x, y),
            kwargs=dict(
                batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0, callbacks=callbacks
            ),
            daemon=True,
        )
        fit.start()
        while not stop.reached.wait(0.1):  # a fit that died cannot reach it
            if not fit.is_alive():
                raise RuntimeError(f"{strategy}: the fit ended before batch {STOP_AT}")
        return
    hist = model.fit(
        x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0, callbacks=callbacks
    )
    state = {f"w{i}": w for i, w in enumerate(model.get_weights())}
    state.update({f"s:{v.path}": np.asarray(v) for v in model.weighting.variables})
    state["objective"] = np.array(hist.history["mtl_objective"][-1])
    state["epochs_run"] = np.array(len(hist.history["loss"]))
    state["baseline"] = np.array([objective.baseline[t] for t in model.task_names])
    np.savez(os.path.join(workdir, f"{mode}-{strategy}.npz"), **state)


def main() -> None:
    tf.config.experimental.enable_op_determinism()
    mode, workdir, *strategies = sys.argv[1:]
    for strategy in strategies:
        run(mode, workdir, strategy)
    if mode == "interrupt":  # every fit is blocked in the middle of epoch 1
        print("KILL-ME", flush=True)
        while True:
            time.sleep(0.05)


if __name__ == "__main__":
    main()
