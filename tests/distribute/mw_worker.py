"""One MultiWorkerMirroredStrategy worker for the multi-worker tests.

Run by `mtl_keras.distribute.launch` (TF_CONFIG set). For each strategy
name it trains the same model under MWMS and, in the same process, on one
device from the same global batches (SGD), and writes a JSON report
`<out>/worker<i>.json`: max |multi - single| per strategy, a weights
checksum (workers must agree), evaluate/predict results.

    python mw_worker.py OUT_DIR name1,name2,...
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf

out_dir, names = sys.argv[1], sys.argv[2].split(",")
strategy = tf.distribute.MultiWorkerMirroredStrategy()
index = int(os.environ.get("MTL_KERAS_WORKER", "0"))

import mtl_keras as mk  # noqa: E402
from mtl_keras.weighting import STRATEGIES  # noqa: E402

rng = np.random.default_rng(0)
n, batch = 192, 63  # 63 does not split evenly: blocks of 32 and 31 rows
x = rng.normal(size=(n, 8)).astype("float32")
click = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("float32")
# Unevenly labelled: worker 0's half of every global batch has far fewer
# click labels, so per-worker means differ from the global one.
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


def train(name: str, distribute: bool):
    scope = strategy.scope() if distribute else tf.distribute.get_strategy().scope()
    with scope:
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
    if "~shuffle" in name:
        # Arrays with shuffle=True: MultiTaskModel seeds the order under MWMS;
        # the single-device twin gets the same seeded dataset.
        if distribute:
            history = model.fit(x, y, batch_size=batch, epochs=2, shuffle=True, verbose=0)
        else:
            from mtl_keras.distribute.shuffle import shuffled_dataset

            history = model.fit(shuffled_dataset(x, y, batch_size=batch), epochs=2, verbose=0)
        return model, history
    history = model.fit(dataset(), epochs=2, verbose=0)
    return model, history


report = {"worker": index, "diff": {}, "checksum": {}, "errors": {}}
for name in names:
    try:
        multi, history = train(name, True)
        single, single_history = train(name, False)
        a = [v.numpy() for v in multi.weights]
        b = [v.numpy() for v in single.weights]
        report["diff"][name] = max(float(np.max(np.abs(u - v))) for u, v in zip(a, b))
        report["checksum"][name] = float(sum(np.sum(np.abs(u).astype("float64")) for u in a))
        report.setdefault("loss", {})[name] = [
            history.history["loss"],
            single_history.history["loss"],
        ]
    except Exception as e:  # reported: the test fails on it
        import traceback

        traceback.print_exc()
        report["errors"][name] = f"{type(e).__name__}: {e}"[:800]

# evaluate and predict with the last multi-worker model vs its single twin
try:
    ev_multi = multi.evaluate(dataset(), return_dict=True, verbose=0)
    ev_single = single.evaluate(dataset(), return_dict=True, verbose=0)
    report["evaluate"] = [ev_multi, ev_single]
    pm = multi.predict(tf.data.Dataset.from_tensor_slices(x).batch(batch), verbose=0)
    ps = single.predict(x, batch_size=batch, verbose=0)
    report["predict_diff"] = max(float(np.max(np.abs(pm[k] - ps[k]))) for k in ps)
    report["predict_rows"] = int(pm["click"].shape[0])
except Exception as e:
    import traceback

    traceback.print_exc()
    report["errors"]["evaluate/predict"] = f"{type(e).__name__}: {e}"[:800]

with open(os.path.join(out_dir, f"worker{index}.json"), "w") as f:
    json.dump(report, f, default=float)
print("done", json.dumps(report["diff"]))

# Streaming from TFRecord shards: 4 files for 2 workers -> FILE auto-shard,
# each worker reads its own files; every row is seen exactly once.
import tempfile  # noqa: E402

import pandas as pd  # noqa: E402

from mtl_keras.data import files  # noqa: E402

shard_dir = tempfile.mkdtemp()
frame = pd.DataFrame({"id": np.arange(n, dtype="float32"), "f": x[:, 0], "dwell": y["dwell"]})
files.write_tfrecords(frame, shard_dir, ["id", "f"], {"dwell": "dwell"}, num_shards=4)
streamed = files.from_tfrecords(shard_dir, batch_size=batch)
ids = []
for features, _ in strategy.experimental_distribute_dataset(streamed):
    for local in strategy.experimental_local_results(features["id"]):
        ids += local.numpy().astype(int).tolist()
report["streamed_ids"] = ids

# steps_per_execution > 1 is refused with a clear error (Keras's loop fails under MWMS).
with strategy.scope():
    tasks = [mk.Binary("click"), mk.Regression("dwell")]
    model = mk.builders.shared_bottom(keras.Input((8,), name="x"), tasks, trunk_units=(4,))
    model.compile("sgd", steps_per_execution=2, jit_compile=False)
try:
    model.fit(dataset(), epochs=1, verbose=0)
    report["steps_per_execution_error"] = "no error"
except ValueError as e:
    report["steps_per_execution_error"] = str(e)

with open(os.path.join(out_dir, f"worker{index}.json"), "w") as f:
    json.dump(report, f, default=float)
