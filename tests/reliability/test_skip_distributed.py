"""`on_nonfinite="skip"` under `tf.distribute.MirroredStrategy` (two logical
CPUs) skips for real: Adam's moments and step count, the weights and the
strategy's state end as in a run that never saw the bad batch (issue #13).

The logical devices must be set before TensorFlow starts, hence one
subprocess that prints a JSON report.
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
    import json, os, warnings
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    import mtl_keras as mk
    from mtl_keras.contracts import NonFiniteError

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    rng = np.random.default_rng(0)
    n, batch = 64, 16
    x = rng.normal(size=(n, 4)).astype("float32")
    y = {"click": (x[:, 0] > 0).astype("float32"), "dwell": x[:, 1].astype("float32")}
    bad = x.copy()
    bad[20, 2] = np.nan  # batch 1 of 4
    keep = np.r_[0:16, 32:64]

    def train(strategy, features, labels, on_nonfinite="skip"):
        with mirrored.scope():
            keras.utils.set_random_seed(0)
            tasks = [mk.Binary("click"), mk.Regression("dwell")]
            model = mk.builders.shared_bottom(
                keras.Input((4,), name="x"), tasks, trunk_units=(8,), tower_units=(4,))
            model.compile(keras.optimizers.Adam(0.01), weighting=strategy,
                          on_nonfinite=on_nonfinite, metrics={"click": [], "dwell": []})
        error = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                model.fit(features, labels, batch_size=batch, shuffle=False, verbose=0)
            except NonFiniteError as err:
                error = str(err)
        return model, error

    def state(model):
        out = {"w%d" % i: w.tolist() for i, w in enumerate(model.get_weights())}
        # By position: two models in one process get different variable paths.
        for i, v in enumerate(model.optimizer.variables):
            out["opt%d" % i if i else "opt:iterations"] = np.asarray(v).tolist()
        for i, v in enumerate(model.weighting.variables):
            out["s%d" % i] = np.asarray(v).tolist()
        return out

    report = {}
    for name in ("uncertainty", "famo"):
        skipped, _ = train(name, bad, y)
        clean, _ = train(name, x[keep], {k: v[keep] for k, v in y.items()})
        report[name] = {"skipped": state(skipped), "clean": state(clean)}
    # "raise": the refused batch does not move anything either.
    refused, error = train("famo", bad, y, on_nonfinite="raise")
    first, _ = train("famo", x[:16], {k: v[:16] for k, v in y.items()})
    report["raise"] = {"skipped": state(refused), "clean": state(first), "error": error}
    print("REPORT" + json.dumps(report))
    """
)


@pytest.mark.slow
def test_mirrored_skip_is_a_real_skip():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("REPORT")]
    assert lines, out.stdout[-2000:] + out.stderr[-4000:]
    report = json.loads(lines[0][len("REPORT") :])
    assert "'x'" in report["raise"]["error"] and "train batch 1" in report["raise"]["error"]
    for name, runs in report.items():
        skipped, clean = runs["skipped"], runs["clean"]
        if name != "raise":
            assert any(k.startswith("s") for k in skipped), sorted(skipped)
        assert sorted(skipped) == sorted(clean), name
        assert skipped["opt:iterations"] == (1 if name == "raise" else 3), name
        for key in skipped:
            assert _close(skipped[key], clean[key]), (name, key, skipped[key], clean[key])


def _close(a, b, tol=1e-5):
    import numpy as np

    return np.allclose(np.asarray(a, "float64"), np.asarray(b, "float64"), rtol=tol, atol=1e-6)
