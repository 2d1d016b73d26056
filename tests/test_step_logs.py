"""The step's logs leave the graph as one tensor and come back as the same dict."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from _support import toy_data, toy_model

import mtl_keras as mk
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


def _batches(n: int = 80, batch: int = 16) -> tf.data.Dataset:
    x, y = toy_data(n)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


def test_default_function_runs_each_batch_once_and_stops_at_the_end():
    model = toy_model()
    model.make_train_function()
    iterator = iter(_batches())  # 5 batches
    iterations = []
    for _ in range(5):
        logs = model.train_function(iterator)
        iterations.append(int(model.optimizer.iterations.numpy()))
        assert np.isfinite(logs["loss"]) and set(logs) >= {"click_loss", "dwell_loss"}
    assert iterations == [1, 2, 3, 4, 5]
    with pytest.raises(StopIteration):
        model.train_function(iterator)
    assert int(model.optimizer.iterations.numpy()) == 5  # the end applied nothing
    seen = []
    callback = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(b))
    model.fit(_batches(), epochs=2, verbose=0, callbacks=[callback])
    assert seen == [0, 1, 2, 3, 4] * 2
    scores = model.evaluate(_batches(), verbose=0, return_dict=True)
    assert np.isfinite(scores["loss"])


@pytest.mark.parametrize("setting", ["xla", "steps_per_execution"])
def test_other_compile_settings_give_the_same_training(setting: str):
    kwargs = {"jit_compile": True} if setting == "xla" else {"steps_per_execution": 2}
    histories = []
    for extra in ({}, kwargs):
        model = toy_model(**extra)
        histories.append(model.fit(_batches(), epochs=2, verbose=0).history)
    for key, values in histories[0].items():
        np.testing.assert_allclose(histories[1][key], values, rtol=2e-4, atol=1e-6, err_msg=key)


def test_a_step_with_logs_that_cannot_be_packed_still_trains():
    class CountingModel(mk.MultiTaskModel):
        def train_step(self, data):
            logs = super().train_step(data)
            return {**logs, "step": tf.cast(self.optimizer.iterations, tf.int64)}

    keras.utils.set_random_seed(0)
    tasks = [mk.Binary("click"), mk.Regression("dwell")]
    x = keras.Input((8,), name="x")
    model = CountingModel(x, {t.name: t.head(x) for t in tasks}, tasks=tasks)
    model.compile(keras.optimizers.Adam(0.01))
    history = model.fit(_batches(), epochs=2, verbose=0).history
    assert history["step"] == [5, 10] and len(history["dwell_loss"]) == 2
