"""Pruning on Census-Income: per-task AUC drop and deployment size/latency.

A shared-bottom model (the demo's 256-128 trunk, 64 towers) is trained
dense, then fine-tuned from those weights with gradual magnitude pruning
(`mtl_keras.compress`, polynomial schedule over the first 70 % of the
fine-tuning steps) to each sparsity; the dense model gets the same extra
epochs without pruning. A task-aware row prunes shared and task-specific
parameters differently. For each model:

- exact test AUC per task and its drop vs dense;
- SavedModel size (directory as .tar.gz) and TFLite size, raw and gzip,
  float32 and dynamic int8 (`mtl_keras.export.export_tflite`);
- latency: TFLite `serving_default` on 16 rows and SavedModel signature on
  256 rows (median of repeated calls).

Unstructured sparsity leaves tensors dense, so raw file size and CPU
latency do not shrink; the zeros only pay off under compression (gzip here,
as over the wire or in an app bundle).

    python benchmarks/pruning.py [--quick] [--rows N] [--epochs 3] [--finetune 2]
"""

from __future__ import annotations

import argparse
import gzip
import os
import pathlib
import tarfile
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf

import mtl_keras as mk
from mtl_keras import compress
from mtl_keras.datasets.census_income import CATEGORICAL, LOG_FEATURES, NUMERIC, census_income
from mtl_keras.evaluation import roc_auc
from mtl_keras.export import export_saved_model, export_tflite
from mtl_keras.export.tflite import load_interpreter

TASKS = ("income", "never_married")


def build(encoder_config: dict) -> mk.MultiTaskModel:
    encoder = mk.layers.TabularEncoder.from_config(encoder_config)
    tasks = [mk.Binary(t) for t in TASKS]
    return mk.builders.shared_bottom(
        encoder.inputs(), tasks, encoder=encoder, trunk_units=(256, 128), tower_units=(64,)
    )


def gz_size(path: pathlib.Path) -> int:
    if path.is_dir():
        buffer = path.with_suffix(".tar.gz")
        with tarfile.open(buffer, "w:gz") as tar:
            tar.add(path, arcname=path.name)
        return buffer.stat().st_size
    return len(gzip.compress(path.read_bytes(), compresslevel=9))


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def deployment(model: keras.Model, rows: dict, folder: pathlib.Path, repeats: int) -> dict:
    out = {}
    saved = pathlib.Path(export_saved_model(model, folder / "saved_model"))
    out["savedmodel_gz_kb"] = gz_size(saved) / 1024
    serving = tf.saved_model.load(str(saved)).signatures["serving_default"]
    batch = {k: tf.constant(v[:256]) for k, v in rows.items()}
    out["savedmodel_ms_256"] = median_ms(lambda: serving(**batch), repeats)
    for quantization in ("float32", "dynamic_int8"):
        path = folder / f"model_{quantization}.tflite"
        export_tflite(model, path, quantization=quantization)
        out[f"tflite_{quantization}_kb"] = path.stat().st_size / 1024
        out[f"tflite_{quantization}_gz_kb"] = gz_size(path) / 1024
        interp, _ = load_interpreter(path)
        runner = interp.get_signature_runner("serving_default")
        details = runner.get_input_details()
        one = {
            k: (
                v[:16].astype(bytes) if v.dtype.kind in "OU" else v[:16].astype(details[k]["dtype"])
            )
            for k, v in rows.items()
        }
        out[f"tflite_{quantization}_ms_16"] = median_ms(lambda r=runner, o=one: r(**o), repeats)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small subsample, one epoch each")
    parser.add_argument("--rows", type=int, default=None, help="training rows (default all)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--finetune", type=int, default=2)
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.8, 0.9])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    if args.quick:
        args.rows, args.epochs, args.finetune, args.repeats = 6000, 1, 1, 5
        args.sparsities = args.sparsities[:3]
    keras.utils.set_random_seed(0)
    train, test = census_income()
    rng = np.random.default_rng(0)
    if args.rows:
        train = train.take(rng.permutation(len(train))[: args.rows])
        test = test.take(rng.permutation(len(test))[: max(args.rows // 2, 2000)])
    features, labels = train
    encoder = mk.layers.TabularEncoder.adapt(
        features, categorical=CATEGORICAL, numeric=NUMERIC, log_features=LOG_FEATURES,
        name="features",
    )  # fmt: skip
    config = encoder.get_config()
    train_ds = mk.data.from_arrays(features, labels, batch_size=512, shuffle=True, seed=0)
    steps = int(np.ceil(len(train) / 512)) * args.finetune

    dense = build(config)
    dense.compile(keras.optimizers.Adam(2e-3), weighting="static")
    dense.fit(train_ds, epochs=args.epochs, verbose=0)
    weights = dense.get_weights()
    dense.fit(train_ds, epochs=args.finetune, verbose=0)  # same total epochs as pruned

    runs = {"dense": (dense, 0.0, 0.0)}
    plans = [(f"{s:.0%}", s, s) for s in args.sparsities] + [("task-aware 50/90", 0.5, 0.9)]
    for name, shared, task in plans:
        model = build(config)
        model.set_weights(weights)
        schedule = compress.PolynomialDecay(
            max(shared, task), begin_step=0, end_step=max(1, int(0.7 * steps)),
            frequency=max(1, steps // 20),
        )  # fmt: skip
        optimizer = compress.pruning_optimizer(
            model, keras.optimizers.Adam(1e-3), schedule, shared_sparsity=shared,
            task_sparsity=task,
        )  # fmt: skip
        model.compile(optimizer, weighting="static")
        model.fit(train_ds, epochs=args.finetune, verbose=0)
        compress.strip_pruning(model)
        runs[name] = (model, shared, task)

    rows = []
    test_features, test_labels = test
    with tempfile.TemporaryDirectory() as tmp:
        for name, (model, _, _) in runs.items():
            pred = model.predict(mk.data.from_arrays(test_features, batch_size=4096), verbose=0)
            sparsity = compress.group_sparsity(model, pruned_only=False)
            folder = pathlib.Path(tmp) / name.replace(" ", "_").replace("/", "-")
            folder.mkdir()
            row = {
                "model": name,
                "sparsity_shared": sparsity.get("shared", 0.0),
                "sparsity_tasks": float(np.mean([sparsity.get(t, 0.0) for t in TASKS])),
                **{f"auc_{t}": roc_auc(test_labels[t], pred[t]) for t in TASKS},
                **deployment(model, test_features, folder, args.repeats),
            }
            rows.append(row)
    dense_auc = {t: rows[0][f"auc_{t}"] for t in TASKS}
    header = (
        "| model | zeros shared / tasks | AUC income (drop) | AUC never_married (drop) | "
        "SavedModel gz KB | TFLite f32 KB (gz) | TFLite int8 KB (gz) | TFLite ms/16 rows f32 / int8 "
        "| SavedModel ms/256 |"
    )
    print(header)
    print("|---" * 9 + "|")
    for r in rows:
        aucs = " | ".join(
            f"{r[f'auc_{t}']:.4f} ({dense_auc[t] - r[f'auc_{t}']:+.4f})" for t in TASKS
        )
        print(
            f"| {r['model']} | {r['sparsity_shared']:.0%} / {r['sparsity_tasks']:.0%} | {aucs} | "
            f"{r['savedmodel_gz_kb']:.0f} | {r['tflite_float32_kb']:.0f} "
            f"({r['tflite_float32_gz_kb']:.0f}) | {r['tflite_dynamic_int8_kb']:.0f} "
            f"({r['tflite_dynamic_int8_gz_kb']:.0f}) | {r['tflite_float32_ms_16']:.3f} / "
            f"{r['tflite_dynamic_int8_ms_16']:.3f} | {r['savedmodel_ms_256']:.2f} |"
        )


if __name__ == "__main__":
    main()
