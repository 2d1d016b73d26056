"""Equality checks of MultiWorkerMirroredStrategy training against one
process, run inside MWMS workers (by mw_worker.py, and by mw_resume.py's
restarted job, which reuses its worker pair).

`run(strategy, names, out_path, extras)` trains one model per configuration
name under MWMS and writes a JSON report to `out_path`: final weights,
strategy state, training/validation logs, `evaluate` logs and predictions.
The chief then trains the same configurations on one device from the same
global batches (no collectives left, the other workers have finished) and
adds them as `reference`: the test compares the two.

A name is a weighting strategy (`upgrad@rep`: rep_grad aggregator) with
options: `+mmoe` (MMoE, a 2-tensor representation), `~shuffle` (arrays with
`shuffle=True`, seeded by `MultiTaskModel.fit`), `~val` (validation data,
`evaluate` and `predict` too). `extras` adds the streaming, TensorBoard and
`steps_per_execution` checks.
"""

from __future__ import annotations

import json
import os
import tempfile

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

import mtl_keras as mk
from mtl_keras import distribute
from mtl_keras.data import files
from mtl_keras.distribute.shuffle import shuffled_dataset
from mtl_keras.weighting import STRATEGIES

rng = np.random.default_rng(0)
# 65 rows split unevenly over 2 workers (33/32) and over 3 (22/22/21); the
# last global batch has 62 rows.
n, batch = 192, 65
x = rng.normal(size=(n, 8)).astype("float32")
click = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("float32")
# Unevenly labelled: worker 0's part of every global batch has far fewer
# click labels, so per-worker means (and AUC, accuracy) differ from global ones.
click[np.arange(n) % batch < batch // 2 - 4] = np.nan
y = {"click": click, "dwell": (2.0 * x[:, 1] - x[:, 2]).astype("float32")}


def weighting_for(name: str):
    seeded = {"rlw": {"seed": 1}, "graddrop": {"seed": 1}, "pcgrad": {"random_order": False}}
    if name.endswith("@rep"):
        return STRATEGIES[name[:-4]](rep_grad=True)
    return STRATEGIES[name](**seeded.get(name, {}))


def dataset():
    # Global batches in a fixed order; MWMS splits each across the workers.
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


def build(name: str, strategy: tf.distribute.Strategy):
    with strategy.scope():
        keras.utils.set_random_seed(0)
        tasks = [mk.Binary("click"), mk.Regression("dwell")]
        base = name.split("+")[0].split("~")[0]
        if "+mmoe" in name:
            model = mk.builders.mmoe(
                keras.Input((8,), name="x"),
                tasks,
                num_experts=3,
                expert_units=(8,),
                tower_units=(4,),
                encoder=keras.layers.Dense(6, activation="tanh"),
            )
        else:
            model = mk.builders.shared_bottom(
                keras.Input((8,), name="x"), tasks, trunk_units=(16,), tower_units=(8,), l2=1e-3
            )
        model.compile(keras.optimizers.SGD(0.1), weighting=weighting_for(base), jit_compile=False)
    return model


def floats(logs: dict) -> dict:
    return {k: np.asarray(v, dtype="float64").tolist() for k, v in logs.items()}


def train(name: str, strategy: tf.distribute.Strategy, board_dir: str | None = None) -> dict:
    """Trains configuration `name` under `strategy`; its report entry."""
    model = build(name, strategy)
    kwargs = {"epochs": 2, "verbose": 0}
    if "~val" in name:
        kwargs["validation_data"] = dataset()
    if "~shuffle" in name and not distribute.is_multi_worker(strategy):
        # The seeded order MultiTaskModel.fit uses under MWMS.
        history = model.fit(shuffled_dataset(x, y, batch_size=batch), **kwargs)
    elif "~shuffle" in name:
        history = model.fit(x, y, batch_size=batch, shuffle=True, **kwargs)
    else:
        history = model.fit(dataset(), **kwargs)
    entry = {
        "weights": np.concatenate([np.ravel(v.numpy()) for v in model.weights]).tolist(),
        "state": np.concatenate(
            [np.zeros(0)] + [np.ravel(v.numpy()) for v in model.weighting.weights]
        ).tolist(),
        "history": floats(history.history),
    }
    if "~val" in name:
        callbacks = []
        if board_dir:  # a lone evaluate with TaskTensorBoard: only the chief keeps files
            board = mk.callbacks.TaskTensorBoard(board_dir)
            callbacks.append(board)
        logs = model.evaluate(dataset(), return_dict=True, verbose=0, callbacks=callbacks)
        entry["evaluate"] = floats(logs)
        if board_dir:
            entry["eval_log_dir_left"] = os.path.exists(board.log_dir)
        features = tf.data.Dataset.from_tensor_slices(x).batch(batch)
        predictions = model.predict(features, verbose=0)
        entry["predict"] = {k: np.ravel(v).tolist() for k, v in predictions.items()}
    return entry


def run(strategy: tf.distribute.Strategy, names: list[str], out_path: str, extras: bool) -> None:
    """The MWMS checks of this worker (see the module doc); writes `out_path`."""
    board_dir = os.path.join(os.path.dirname(out_path), "tb_eval") if extras else None
    report = {"worker": int(os.environ.get("MTL_KERAS_WORKER", "0")), "configs": {}, "errors": {}}
    for name in names:
        try:
            report["configs"][name] = train(name, strategy, board_dir)
        except Exception as e:  # reported: the test fails on it
            import traceback

            traceback.print_exc()
            report["errors"][name] = f"{type(e).__name__}: {e}"[:800]
    if extras:
        report.update(extra_checks(strategy))
    if distribute.is_chief(strategy):
        single = tf.distribute.get_strategy()
        report["reference"] = {name: train(name, single) for name in names}
    with open(out_path, "w") as f:
        json.dump(report, f)


def extra_checks(strategy: tf.distribute.Strategy) -> dict:
    """Streaming from TFRecord shards, uneven shards, steps_per_execution."""
    report = {}
    # 4 files for 2 workers -> FILE auto-shard: each worker reads its own
    # files; every row is seen exactly once.
    frame = pd.DataFrame({"id": np.arange(n, dtype="float32"), "f": x[:, 0], "dwell": y["dwell"]})
    shards = {k: tempfile.mkdtemp() for k in (3, 4)}
    for count, directory in shards.items():
        files.write_tfrecords(frame, directory, ["id", "f"], {"dwell": "dwell"}, num_shards=count)
    streamed = files.from_tfrecords(shards[4], batch_size=batch)
    ids = []
    for features, _ in strategy.experimental_distribute_dataset(streamed):
        for local in strategy.experimental_local_results(features["id"]):
            ids += local.numpy().astype(int).tolist()
    report["streamed_ids"] = ids

    # 3 files for 2 workers, no .repeat(): worker 0 reads 2 files, worker 1
    # one, so worker 1 runs out of batches first. TF's distributed iterator
    # agrees on the end of the data (worker 1 steps with empty batches
    # meanwhile): no hang, and evaluate's row-wise metrics equal one
    # process's on the same weights.
    uneven = files.from_tfrecords(shards[3], batch_size=32)
    inputs = {"id": keras.Input((1,), name="id"), "f": keras.Input((1,), name="f")}
    models = []
    for scope in (strategy.scope(), tf.distribute.get_strategy().scope()):
        with scope:
            keras.utils.set_random_seed(0)
            model = mk.builders.shared_bottom(inputs, [mk.Regression("dwell")], trunk_units=(4,))
            model.compile(keras.optimizers.SGD(0.01), jit_compile=False)
        models.append(model)
    streamed_model, twin = models
    streamed_model.fit(uneven, epochs=2, verbose=0)
    report["uneven_evaluate"] = floats(streamed_model.evaluate(uneven, return_dict=True, verbose=0))
    twin.set_weights(streamed_model.get_weights())
    report["uneven_evaluate_single"] = floats(twin.evaluate(uneven, return_dict=True, verbose=0))

    # steps_per_execution > 1 is refused with a clear error (Keras's loop fails under MWMS).
    with strategy.scope():
        tasks = [mk.Binary("click"), mk.Regression("dwell")]
        spe = mk.builders.shared_bottom(keras.Input((8,), name="x"), tasks, trunk_units=(4,))
        spe.compile("sgd", steps_per_execution=2, jit_compile=False)
    try:
        spe.fit(dataset(), epochs=1, verbose=0)
        report["steps_per_execution_error"] = "no error"
    except ValueError as e:
        report["steps_per_execution_error"] = str(e)
    return report
