"""Pruning under `tf.distribute.MirroredStrategy` (two logical CPUs) matches
single-device pruning on the same global batch, masks included.

Logical devices must be set before TF initialises, hence a subprocess.
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
    from mtl_keras import compress

    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = {"click": (x[:, 0] > 0).astype("float32"), "dwell": (x[:, 1] - x[:, 2]).astype("float32")}
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

    def train(distribute, weighting):
        scope = mirrored.scope() if distribute else tf.distribute.get_strategy().scope()
        with scope:
            keras.utils.set_random_seed(0)
            tasks = [mk.Binary("click"), mk.Regression("dwell")]
            model = mk.builders.shared_bottom(keras.Input((8,)), tasks, trunk_units=(16,),
                                              tower_units=(8,))
            schedule = compress.PolynomialDecay(0.6, begin_step=0, end_step=6, frequency=2)
            opt = compress.pruning_optimizer(model, keras.optimizers.SGD(0.05), schedule,
                                             task_sparsity=0.8)
            model.compile(opt, weighting=weighting)
        model.fit(x, y, batch_size=64, epochs=2, shuffle=False, verbose=0)
        weights = {v.path: v.numpy() for v in model.trainable_variables}
        masks = {v.path: m.numpy() for v, m, _ in opt.masks}
        return weights, masks, compress.group_sparsity(model)

    report = {}
    for weighting in ("static", "mgda"):
        (w1, m1, s1), (w2, m2, s2) = train(False, weighting), train(True, weighting)
        report[weighting] = {
            "max_weight_diff": max(float(np.abs(w1[k] - w2[k]).max()) for k in w1),
            "masks_equal": all(np.array_equal(m1[k], m2[k]) for k in m1),
            "zeros_where_masked": all(bool(np.all(w2[k][m2[k] == 0] == 0)) for k in m2),
            "sparsity": s2,
        }
    print("REPORT" + json.dumps(report))
    """
)


@pytest.mark.slow
def test_pruning_mirrored_matches_single_device():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(s for s in out.stdout.splitlines() if s.startswith("REPORT"))
    report = json.loads(line[len("REPORT") :])
    for weighting, r in report.items():
        assert r["masks_equal"], weighting
        assert r["zeros_where_masked"], weighting
        assert r["max_weight_diff"] < 1e-4, (weighting, r)
        assert r["sparsity"]["shared"] == pytest.approx(0.6, abs=0.01)
        assert r["sparsity"]["click"] == pytest.approx(0.8, abs=0.01)
