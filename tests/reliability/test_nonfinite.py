"""Non-finite features, task losses and gradients stop training (or skip the
batch when asked), whatever oneDNN does to NaN."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import mtl_keras as mk
from mtl_keras.contracts import FeatureError, NonFiniteError

from ._models import data, named_model

ROOT = Path(__file__).resolve().parents[2]


def _nan_feature(x, rows=(2, 9)):
    x = dict(x)
    x["age"] = x["age"].copy()
    x["age"][list(rows)] = np.nan
    return x


def test_nan_feature_stops_training_naming_the_feature():
    model = named_model()
    x, y = data(32)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(
        NonFiniteError, match=r"train batch 0: non-finite values.*'age' \(1 values\)"
    ):
        model.fit(_nan_feature(x), y, batch_size=8, epochs=1, verbose=0)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


_SCRIPT = """
import os, sys
sys.path.insert(0, {tests!r})
import numpy as np
from reliability._models import data, named_model
from mtl_keras.contracts import NonFiniteError
model = named_model()
x, y = data(32)
x["age"][5] = np.nan
try:
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
except NonFiniteError as err:
    ok = "'age'" in str(err) and all(np.isfinite(w).all() for w in model.get_weights())
    print("RAISED", ok)
else:
    print("SILENT")
"""


@pytest.mark.slow
@pytest.mark.parametrize("onednn", ["0", "1"])
def test_nan_feature_detected_with_and_without_onednn(onednn):
    # oneDNN's graph rewrites can turn NaN into 0 at a ReLU (finite losses,
    # NaN kernel): the check reads the features themselves.
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    script = _SCRIPT.format(tests=str(ROOT / "tests"))
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert "RAISED True" in out.stdout, out.stdout + out.stderr[-2000:]


def test_skip_mode_skips_counts_and_logs():
    model = named_model(on_nonfinite="skip")
    x, y = data(32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(_nan_feature(x, rows=(2,)), y, batch_size=8, epochs=2, verbose=0)
    assert history.history["nonfinite_skipped"] == [1.0, 1.0]
    # The skipped batch is left out of the logged losses and metrics.
    assert all(np.isfinite(v).all() for v in history.history.values())
    assert any("'age'" in str(w.message) and "Skipped" in str(w.message) for w in caught)
    # 4 batches per epoch, one skipped each time: 6 updates, finite weights.
    assert int(model.optimizer.iterations.numpy()) == 6
    assert all(np.isfinite(w).all() for w in model.get_weights())


@keras.saving.register_keras_serializable(package="tests_reliability")
def infinite_loss(y, p):
    return -tf.math.log(tf.zeros_like(p[:, 0]))


@keras.saving.register_keras_serializable(package="tests_reliability")
def sqrt_at_zero_loss(y, p):
    # The loss is 0; the gradient of sqrt at 0 is not finite.
    return tf.sqrt(tf.abs(p[:, 0] * 0.0))


def _model_with_dwell_loss(loss):
    keras.utils.set_random_seed(0)
    inputs = {"age": keras.Input((), name="age"), "score": keras.Input((), name="score")}
    h = keras.layers.Concatenate()([keras.layers.Reshape((1,))(v) for v in inputs.values()])
    h = keras.layers.Dense(4, activation="tanh")(h)
    tasks = [mk.Binary("click"), mk.Regression("dwell", loss=loss)]
    model = mk.MultiTaskModel(inputs, {t.name: t.head(h) for t in tasks}, tasks=tasks)
    model.compile("sgd")
    return model


def test_infinite_task_loss_names_the_task():
    model = _model_with_dwell_loss(infinite_loss)
    x, y = data(16)
    with pytest.raises(NonFiniteError, match=r"non-finite loss of tasks \['dwell'\]"):
        model.fit(x, {"click": y["click"], "dwell": y["dwell"]}, batch_size=16, verbose=0)


def test_nonfinite_gradient_with_finite_loss_names_the_parameters():
    model = _model_with_dwell_loss(sqrt_at_zero_loss)
    x, y = data(16)
    with pytest.raises(NonFiniteError, match=r"non-finite gradients of the .*task 'dwell'"):
        model.fit(x, {"click": y["click"], "dwell": y["dwell"]}, batch_size=16, verbose=0)


def test_nonfinite_options_are_checked():
    with pytest.raises(ValueError, match="on_nonfinite"):
        named_model(on_nonfinite="ignore")
    with pytest.raises(FeatureError, match="'zip'"):
        named_model(allow_nonfinite_features=["zip"])


def test_allowed_feature_may_carry_nan_when_a_layer_imputes_it():
    keras.utils.set_random_seed(0)
    inputs = {"age": keras.Input((), name="age"), "score": keras.Input((), name="score")}
    age = keras.layers.Lambda(lambda v: tf.where(tf.math.is_nan(v), 0.0, v))(inputs["age"])
    h = keras.layers.Concatenate()(
        [keras.layers.Reshape((1,))(age), keras.layers.Reshape((1,))(inputs["score"])]
    )
    tasks = [mk.Binary("click")]
    model = mk.MultiTaskModel(inputs, {"click": tasks[0].head(h)}, tasks=tasks)
    model.compile("adam", allow_nonfinite_features=["age"])
    x, y = data(16)
    model.fit(_nan_feature(x), {"click": y["click"]}, batch_size=8, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 2
