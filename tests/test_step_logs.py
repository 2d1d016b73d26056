"""The step's logs leave the graph as one tensor and come back as the same dict."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from _support import toy_data, toy_model

from mtl_keras import step_logs


def test_train_function_returns_every_log_once_as_numpy():
    x, y = toy_data(64)
    model = toy_model()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # builds the train function
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    logs = model.train_function(iter(data))
    assert isinstance(logs, dict)
    expected = model.get_metrics_result()
    assert list(logs) == list(expected)
    for key, value in logs.items():
        assert isinstance(value, np.floating), key
        np.testing.assert_allclose(value, expected[key], rtol=1e-6, err_msg=key)


def test_fit_evaluate_and_on_batch_logs_are_floats_with_the_task_keys():
    x, y = toy_data(64)
    model = toy_model()
    seen = []
    callback = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(logs))
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[callback]).history
    assert len(seen) == 8 and all(isinstance(v, float) for v in seen[-1].values())
    assert {"loss", "click_loss", "dwell_loss", "click_weight"} <= set(history)
    scores = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert "click_weight" not in scores and np.isfinite(scores["dwell_loss"])
    one = model.train_on_batch(x[:16], {k: v[:16] for k, v in y.items()}, return_dict=True)
    assert set(one) == set(seen[-1])


def test_logs_that_cannot_be_packed_pass_through():
    packable = {"loss": tf.constant(1.0), "v": tf.ones([2])}
    assert step_logs.packable(packable)
    for other in (
        {"count": tf.constant(3, tf.int64)},  # not float32
        {"text": tf.constant("a")},
        {"nested": {"a": tf.constant(1.0)}},
        [tf.constant(1.0)],  # not a dict
    ):
        assert not step_logs.packable(other)


def test_unpack_restores_shapes_in_order():
    logs = {"b": tf.constant(2.0), "a": tf.reshape(tf.range(6, dtype=tf.float32), [2, 3])}
    vector, specs = step_logs.pack(logs)
    out = step_logs.unpack(vector.numpy(), specs)
    assert list(out) == ["b", "a"]
    assert out["b"] == 2.0 and out["a"].shape == (2, 3) and out["a"][1, 2] == 5.0
