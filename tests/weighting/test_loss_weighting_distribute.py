"""The issue #3 loss weightings train under a 2-replica MirroredStrategy."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from _support import support_env

SCRIPT = """
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
# Two logical CPUs must be configured before TensorFlow initialises.
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from _support import toy_data, toy_model
x, y = toy_data(64)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
out = {}
for name in ["dwa", "rlw", "famo", "gradnorm", "imtl_l", "geometric_mean"]:
    with strategy.scope():
        model = toy_model(name, metrics={"click": [], "dwell": []})
    out[name] = model.fit(x, y, batch_size=32, epochs=3, verbose=0).history
    out[name]["state"] = [v.numpy().tolist() for v in model.weighting.variables]
print(json.dumps(out))
"""


@pytest.mark.slow
def test_fit_under_mirrored_strategy() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        check=True,
        capture_output=True,
        text=True,
        env=support_env(),
    )
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, history in results.items():
        for key in ("loss", "click_weight", "dwell_weight"):
            assert np.all(np.isfinite(history[key])), (name, key, history[key])
        for value in history["state"]:
            assert np.all(np.isfinite(value)), (name, value)
    assert results["dwa"]["state"][4] == 2.0  # epochs_seen: two epochs closed
