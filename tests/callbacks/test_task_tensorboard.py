"""`TaskTensorBoard`: per-task sections next to Keras's own TensorBoard logs."""

from __future__ import annotations

import glob
import os
from collections import defaultdict

import keras
import numpy as np
import pytest
import tensorflow as tf
from _support import toy_data, toy_model

import mtl_keras as mk
from mtl_keras.callbacks import TaskTensorBoard
from mtl_keras.callbacks.task_tensorboard import split_task_key

TASKS = ["click", "dwell"]
# What MultiTaskModel logs for the toy tasks (Binary: auc, accuracy;
# Regression: mae, rmse), besides loss and weight.
METRICS = {
    "click": ["loss", "weight", "auc", "accuracy"],
    "dwell": ["loss", "weight", "mae", "rmse"],
}


def read_scalars(run_dir: str) -> dict[str, dict[int, float]]:
    """tag -> {step: value} from every event file of one run directory."""
    scalars: dict[str, dict[int, float]] = defaultdict(dict)
    for path in sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.HasField("tensor") and value.metadata.plugin_data.plugin_name == "scalars":
                    scalars[value.tag][event.step] = float(tf.make_ndarray(value.tensor))
    return dict(scalars)


def fit(tmp_path, update_freq="epoch", epochs=2, steps_per_execution=None, **tb_kwargs):
    compile_kwargs = (
        {} if steps_per_execution is None else {"steps_per_execution": steps_per_execution}
    )
    model = toy_model(**compile_kwargs)
    x, y = toy_data(256)
    xv, yv = toy_data(64, seed=1)
    log_dir = str(tmp_path / "logs")
    tb = TaskTensorBoard(log_dir, update_freq=update_freq, write_graph=False, **tb_kwargs)
    history = model.fit(
        x, y, validation_data=(xv, yv), epochs=epochs, batch_size=64, callbacks=[tb], verbose=0
    )
    train = read_scalars(os.path.join(log_dir, "train"))
    val = read_scalars(os.path.join(log_dir, "validation"))
    return history.history, train, val


def test_epoch_task_scalars_match_history(tmp_path):
    history, train, val = fit(tmp_path)
    for task in TASKS:
        for metric in METRICS[task]:
            tag = f"{task}/{metric}"
            assert tag in train, f"{tag} missing from the train run: {sorted(train)}"
            assert sorted(train[tag]) == [0, 1]
            np.testing.assert_allclose(
                [train[tag][e] for e in (0, 1)], history[f"{task}_{metric}"], rtol=1e-6
            )
            if metric == "weight":  # a training quantity: not logged in validation
                assert tag not in val
                continue
            assert tag in val, f"{tag} missing from the validation run: {sorted(val)}"
            assert sorted(val[tag]) == [0, 1]
            np.testing.assert_allclose(
                [val[tag][e] for e in (0, 1)], history[f"val_{task}_{metric}"], rtol=1e-6
            )
    # Only task logs are regrouped; with update_freq="epoch" there are no
    # per-step task scalars.
    task_tags = {t for t in train if "/" in t}
    assert task_tags == {f"{t}/{m}" for t in TASKS for m in METRICS[t]}
    assert {t for t in val if "/" in t} == {
        f"{t}/{m}" for t in TASKS for m in METRICS[t] if m != "weight"
    }
    # Keras's own logging is untouched.
    for tag in ("epoch_loss", "epoch_click_loss", "epoch_dwell_mae", "epoch_learning_rate"):
        assert tag in train
    np.testing.assert_allclose(
        [train["epoch_click_auc"][e] for e in (0, 1)], history["click_auc"], rtol=1e-6
    )
    assert "epoch_click_loss" in val


def test_batch_task_scalars(tmp_path):
    # 256 rows / batch 64 = 4 steps per epoch, steps 1..8 over 2 epochs.
    history, train, val = fit(tmp_path, update_freq="batch", steps_per_execution=1)
    for task in TASKS:
        for metric in METRICS[task]:
            tag = f"{task}/batch_{metric}"
            assert sorted(train[tag]) == list(range(1, 9))
            # The last step's running average is the epoch value.
            np.testing.assert_allclose(
                [train[tag][4], train[tag][8]], history[f"{task}_{metric}"], rtol=1e-6
            )
            assert tag not in val
            assert sorted(train[f"{task}/{metric}"]) == [0, 1]
    assert sorted(train["batch_click_loss"]) == list(range(1, 9))


def test_batch_scalars_with_steps_per_execution(tmp_path):
    # steps_per_execution=32 runs each 4-step epoch in one call: one
    # batch-end per epoch, at its real global step, with the epoch value.
    history, train, _ = fit(tmp_path, update_freq="batch", steps_per_execution=32)
    assert sorted(train["click/batch_loss"]) == sorted(train["batch_click_loss"]) == [4, 8]
    np.testing.assert_allclose(
        [train["click/batch_auc"][s] for s in (4, 8)], history["click_auc"], rtol=1e-6
    )
    # Executions of 2 steps end at 2, 4, 6, 8; update_freq 3 is crossed by
    # (2, 4] and (4, 6] only.
    _, train, _ = fit(tmp_path / "k2", update_freq=3, steps_per_execution=2)
    assert sorted(train["click/batch_loss"]) == [4, 6]


def test_batch_end_is_async_safe_unless_timing_or_profiling(tmp_path):
    # Backends with thread-safe dispatch then run batch ends off the step loop.
    assert TaskTensorBoard(str(tmp_path), update_freq="batch").async_safe
    assert not TaskTensorBoard(str(tmp_path), write_steps_per_second=True).async_safe


def test_int_update_freq(tmp_path):
    history, train, val = fit(tmp_path, update_freq=3, steps_per_execution=1)
    assert sorted(train["click/batch_loss"]) == [3, 6]
    # Keras's epoch scalars are kept too (plain TensorBoard drops them here).
    assert sorted(train["epoch_loss"]) == [0, 1]
    assert sorted(val["epoch_click_loss"]) == [0, 1]
    # Epoch scalars do not depend on the per-step cadence (steps 4 and 8 are
    # not multiples of 3).
    for task in TASKS:
        for metric in METRICS[task]:
            np.testing.assert_allclose(
                [train[f"{task}/{metric}"][e] for e in (0, 1)],
                history[f"{task}_{metric}"],
                rtol=1e-6,
            )
            if metric == "weight":
                continue
            np.testing.assert_allclose(
                [val[f"{task}/{metric}"][e] for e in (0, 1)],
                history[f"val_{task}_{metric}"],
                rtol=1e-6,
            )


def test_no_validation_run_without_validation_data(tmp_path):
    model = toy_model()
    x, y = toy_data(64)
    log_dir = tmp_path / "logs"
    model.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[TaskTensorBoard(str(log_dir))])
    assert "click/loss" in read_scalars(str(log_dir / "train"))
    assert not (log_dir / "validation").exists()


def test_plain_functional_model_with_dict_outputs(tmp_path):
    # Keras prefixes logs with the output name when there are several outputs.
    keras.utils.set_random_seed(0)
    inp = keras.Input((8,))
    h = keras.layers.Dense(4)(inp)
    outputs = {
        "click": keras.layers.Dense(1, activation="sigmoid", name="click")(h),
        "dwell": keras.layers.Dense(1, name="dwell")(h),
    }
    model = keras.Model(inp, outputs)
    model.compile(
        "adam",
        loss={"click": "binary_crossentropy", "dwell": "mse"},
        metrics={"click": ["accuracy"], "dwell": ["mae"]},
    )
    x, y = toy_data(64)
    log_dir = tmp_path / "logs"
    history = model.fit(x, y, epochs=1, verbose=0, callbacks=[TaskTensorBoard(str(log_dir))])
    train = read_scalars(str(log_dir / "train"))
    task_keys = [k for k in history.history if k.startswith(("click_", "dwell_"))]
    assert len(task_keys) >= 4, history.history
    for key in task_keys:
        task, metric = key.split("_", 1)
        np.testing.assert_allclose(train[f"{task}/{metric}"][0], history.history[key][0], rtol=1e-6)


def test_split_task_key_prefers_longest_task_name():
    names = ["a", "a_b"]
    assert split_task_key("a_b_loss", names) == ("a_b", "loss")
    assert split_task_key("a_loss", names) == ("a", "loss")
    assert split_task_key("a_", names) is None
    assert split_task_key("loss", names) is None
    assert split_task_key("learning_rate", names) is None


def test_config_and_tasks_argument(tmp_path):
    tb = TaskTensorBoard(str(tmp_path), update_freq="batch", tasks=[mk.Binary("click"), "dwell"])
    config = tb.get_config()
    assert config["update_freq"] == "batch"
    assert config["tasks"] == ["click", "dwell"]
    assert config["log_dir"] == str(tmp_path)
    clone = TaskTensorBoard.from_config(config)
    assert clone.get_config() == config
    assert isinstance(clone, keras.callbacks.TensorBoard)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"tasks": []}, "non-empty list"),
        ({"tasks": [1]}, "task names or Task specs"),
        ({"tasks": ["a", "a"]}, "duplicated"),
        ({"tasks": ["bad name"]}, "not valid"),
        ({"update_freq": 0}, "update_freq"),
        ({"update_freq": "step"}, "update_freq"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        TaskTensorBoard(str(tmp_path), **kwargs)
