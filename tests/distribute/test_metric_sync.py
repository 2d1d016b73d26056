"""Metric logs under `tf.distribute.MirroredStrategy` (two logical CPUs) are
computed from the replicas' *summed* metric states, like one process: AUC,
accuracy and RMSE over unevenly labelled shards, in `evaluate`, in `fit`'s
validation logs and in every batch's logs (issue #14; the multi-worker
twin is in test_multi_worker.py).

XLA is not run here: `jit_compile=True` under MirroredStrategy over logical
CPUs of one host fails in TF itself ("Trying to access resource ... located
in device CPU:1 from device CPU:0"), before any metric is involved.

The logical devices must be configured before TF initialises: the runs
happen in one subprocess that prints a JSON report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    import mtl_keras as mk

    rng = np.random.default_rng(0)
    n, batch = 192, 64
    x = rng.normal(size=(n, 8)).astype("float32")
    click = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("float32")
    # Replica 0's half of every batch has far fewer click labels: averaging
    # per-replica AUC/accuracy/RMSE gives a different number.
    click[np.arange(n) % batch < batch // 2 - 4] = np.nan
    y = {"click": click, "dwell": (2.0 * x[:, 1] - x[:, 2]).astype("float32")}
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

    class BatchLogs(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.logs = []
        def on_test_batch_end(self, batch, logs=None):
            self.logs.append({k: float(v) for k, v in logs.items()})

    def dataset():
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)

    def run(distribute, **compile_kw):
        scope = mirrored.scope() if distribute else tf.distribute.get_strategy().scope()
        with scope:
            keras.utils.set_random_seed(0)
            tasks = [mk.Binary("click"), mk.Regression("dwell")]
            model = mk.builders.shared_bottom(
                keras.Input((8,), name="x"), tasks, trunk_units=(16,))
            model.compile(keras.optimizers.SGD(0.1), **compile_kw)
        history = model.fit(dataset(), validation_data=dataset(), epochs=1, verbose=0)
        batches = BatchLogs()
        logs = model.evaluate(dataset(), return_dict=True, verbose=0, callbacks=[batches])
        return {"history": history.history, "evaluate": logs, "batches": batches.logs}

    report = {}
    for name, kw in {
        "graph": {"jit_compile": False},
        "skip": {"jit_compile": False, "on_nonfinite": "skip"},
    }.items():
        report[name] = [run(True, **kw), run(False, **kw)]
    print("REPORT" + json.dumps(report))
    """
)


@pytest.mark.slow
def test_mirrored_metrics_equal_one_process():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.split("REPORT", 1)[1])
    for name, (multi, single) in report.items():
        # Metrics that a mean of per-replica results would get wrong here.
        for key in ("val_click_auc", "val_click_accuracy", "val_dwell_rmse", "click_auc"):
            assert multi["history"][key] == pytest.approx(single["history"][key], abs=1e-5), (
                name,
                key,
            )
        assert multi["history"].keys() == single["history"].keys()
        assert multi["evaluate"].keys() == single["evaluate"].keys()
        for key, value in single["evaluate"].items():
            assert multi["evaluate"][key] == pytest.approx(value, abs=1e-5), (name, key)
        # Every batch's logs too (callbacks and the progress bar see them).
        assert len(multi["batches"]) == len(single["batches"]) == 3
        for got, want in zip(multi["batches"], single["batches"]):
            for key, value in want.items():
                assert got[key] == pytest.approx(value, abs=1e-5), (name, key)
