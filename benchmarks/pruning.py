"""Pruning on Census-Income and MultiMNIST: per-task metric drop, size, latency.

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

MultiMNIST (`--dataset multimnist` or `both`): a small CNN shared by the
`left` and `right` digit tasks, pruned the same way (dense, then fine-tuned
with pruning from the dense weights); per-task test accuracy and its drop vs
dense at each sparsity, plus the same deployment columns. `--plot PATH`
draws the per-task metric drop vs sparsity of every data set (matplotlib).

    python benchmarks/pruning.py [--quick] [--dataset census|multimnist|both] [--rows N]
        [--epochs 3] [--finetune 2] [--plot benchmarks/results/pruning_curves.png]
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


def pruned_runs(
    build_fn, train_ds, epochs: int, finetune: int, steps: int, sparsities, task_aware=(0.5, 0.9)
) -> dict:
    """Dense (epochs + finetune) and, from the dense weights after `epochs`,
    one model fine-tuned with pruning per sparsity (plus a task-aware one)."""
    dense = build_fn()
    dense.compile(keras.optimizers.Adam(2e-3), weighting="static")
    dense.fit(train_ds, epochs=epochs, verbose=0)
    weights = dense.get_weights()
    dense.fit(train_ds, epochs=finetune, verbose=0)  # same total epochs as pruned

    runs = {"dense": dense}
    plans = [(f"{s:.0%}", s, s) for s in sparsities]
    if task_aware:
        plans.append((f"task-aware {task_aware[0]:.0%}/{task_aware[1]:.0%}", *task_aware))
    for name, shared, task in plans:
        model = build_fn()
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
        model.fit(train_ds, epochs=finetune, verbose=0)
        compress.strip_pruning(model)
        runs[name] = model
    return runs


def measure(runs: dict, tasks, score, test_features, repeats: int) -> list[dict]:
    """Per model: sparsity per group, `score(task, predictions)` per task, deployment."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in runs.items():
            pred = model.predict(mk.data.from_arrays(test_features, batch_size=1024), verbose=0)
            sparsity = compress.group_sparsity(model, pruned_only=False)
            folder = pathlib.Path(tmp) / name.replace(" ", "_").replace("/", "-").replace("%", "")
            folder.mkdir()
            rows.append(
                {
                    "model": name,
                    "sparsity_shared": sparsity.get("shared", 0.0),
                    "sparsity_tasks": float(np.mean([sparsity.get(t, 0.0) for t in tasks])),
                    **{f"score_{t}": score(t, pred[t]) for t in tasks},
                    **deployment(model, test_features, folder, repeats),
                }
            )
    return rows


def print_table(title: str, metric: str, tasks, rows: list[dict]) -> None:
    dense = {t: rows[0][f"score_{t}"] for t in tasks}
    print(f"\n{title}\n")
    scores = " | ".join(f"{metric} {t} (drop)" for t in tasks)
    print(
        f"| model | zeros shared / tasks | {scores} | SavedModel gz KB | TFLite f32 KB (gz) | "
        "TFLite int8 KB (gz) | TFLite ms/16 rows f32 / int8 | SavedModel ms/256 |"
    )
    print("|---" * (7 + len(tasks)) + "|")
    for r in rows:
        values = " | ".join(
            f"{r[f'score_{t}']:.4f} ({dense[t] - r[f'score_{t}']:+.4f})" for t in tasks
        )
        print(
            f"| {r['model']} | {r['sparsity_shared']:.0%} / {r['sparsity_tasks']:.0%} | {values} | "
            f"{r['savedmodel_gz_kb']:.0f} | {r['tflite_float32_kb']:.0f} "
            f"({r['tflite_float32_gz_kb']:.0f}) | {r['tflite_dynamic_int8_kb']:.0f} "
            f"({r['tflite_dynamic_int8_gz_kb']:.0f}) | {r['tflite_float32_ms_16']:.3f} / "
            f"{r['tflite_dynamic_int8_ms_16']:.3f} | {r['savedmodel_ms_256']:.2f} |",
            flush=True,
        )


def census(args) -> tuple[list[dict], tuple[str, ...]]:
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
    runs = pruned_runs(
        lambda: build(config), train_ds, args.epochs, args.finetune, steps, args.sparsities
    )
    test_features, test_labels = test
    rows = measure(
        runs, TASKS, lambda t, p: roc_auc(test_labels[t], p), test_features, args.repeats
    )
    print_table(
        f"Census-Income ({len(train)} training rows, {args.epochs} + {args.finetune} epochs)",
        "AUC",
        TASKS,
        rows,
    )
    return rows, TASKS


MNIST_TASKS = ("left", "right")


def build_multimnist() -> mk.MultiTaskModel:
    from mtl_keras.builders.fusion_encoders import image_cnn

    image = keras.Input((36, 36, 1), name="image")
    cnn = image_cnn((36, 36, 1), (16, 32), units=128, name="cnn")
    tasks = [mk.Multiclass(t, 10) for t in MNIST_TASKS]
    return mk.builders.shared_bottom(
        image, tasks, encoder=cnn, trunk_units=(128,), tower_units=(64,), name="multimnist"
    )


def multimnist(args) -> tuple[list[dict], tuple[str, ...]]:
    from mtl_keras.datasets import multi_mnist

    n_train = args.mnist_rows
    (x, y), (xt, yt) = multi_mnist(num_train=n_train, num_test=max(n_train // 5, 1000), seed=0)
    train_ds = mk.data.from_arrays({"image": x}, y, batch_size=128, shuffle=True, seed=0)
    steps = int(np.ceil(n_train / 128)) * args.finetune
    runs = pruned_runs(
        build_multimnist, train_ds, args.epochs, args.finetune, steps, args.sparsities
    )

    def accuracy(task: str, pred: np.ndarray) -> float:
        return float(np.mean(np.argmax(pred, axis=-1) == yt[task]))

    rows = measure(runs, MNIST_TASKS, accuracy, {"image": xt}, args.repeats)
    print_table(
        f"MultiMNIST ({n_train} training images, {args.epochs} + {args.finetune} epochs)",
        "accuracy",
        MNIST_TASKS,
        rows,
    )
    return rows, MNIST_TASKS


def plot(results: dict, path: str) -> None:
    """Per-task metric drop vs sparsity, one panel per data set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.6), squeeze=False)
    for ax, (title, (rows, tasks, metric)) in zip(axes[0], results.items()):
        uniform = [r for r in rows if not r["model"].startswith("task-aware")]
        sparsity = [r["sparsity_shared"] for r in uniform]
        for t in tasks:
            drop = [uniform[0][f"score_{t}"] - r[f"score_{t}"] for r in uniform]
            ax.plot(sparsity, drop, marker="o", label=t)
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set(title=title, xlabel="sparsity (shared = tasks)", ylabel=f"{metric} drop vs dense")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"\nplot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small subsample, one epoch each")
    parser.add_argument("--dataset", choices=("census", "multimnist", "both"), default="both")
    parser.add_argument("--rows", type=int, default=None, help="Census training rows (default all)")
    parser.add_argument("--mnist-rows", type=int, default=10_000, help="MultiMNIST train images")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--finetune", type=int, default=2)
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.8, 0.9])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--plot", default=None, help="write the metric-drop curves (PNG)")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.mnist_rows, args.epochs, args.finetune, args.repeats = 6000, 2000, 1, 1, 5
    keras.utils.set_random_seed(0)
    results = {}
    if args.dataset in ("census", "both"):
        rows, tasks = census(args)
        results["Census-Income"] = (rows, tasks, "AUC")
    if args.dataset in ("multimnist", "both"):
        keras.utils.set_random_seed(0)
        rows, tasks = multimnist(args)
        results["MultiMNIST"] = (rows, tasks, "accuracy")
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
