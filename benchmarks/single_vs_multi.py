"""Single-task vs multi-task: per-task results, Δm and training-time ratio.

Census-Income (income, never_married; AUC) and MultiMNIST (left, right;
accuracy). Every single-task model uses the same builder, widths, optimizer,
epochs and batch size as the multi-task model, with one head.

    python benchmarks/single_vs_multi.py [--train-rows 20000] [--epochs 3] [--full]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

import mtl_keras as mk
from mtl_keras.evaluation import delta_m, single_task_baselines, train_and_evaluate


def census(args: argparse.Namespace) -> dict:
    from mtl_keras.datasets.census_income import CATEGORICAL, LOG_FEATURES, NUMERIC, census_income

    train, test = census_income()
    if not args.full:
        rng = np.random.default_rng(args.seed)
        train = train.take(rng.permutation(len(train))[: args.train_rows])
        test = test.take(rng.permutation(len(test))[: args.train_rows])
    encoder = mk.layers.TabularEncoder.adapt(
        train.features, categorical=CATEGORICAL, numeric=NUMERIC, log_features=LOG_FEATURES
    )

    def build(tasks):
        # A fresh encoder copy per model, so no weights are shared between runs.
        enc = mk.layers.TabularEncoder.from_config(encoder.get_config())
        return mk.builders.shared_bottom(
            enc.inputs(), tasks, encoder=enc, trunk_units=(128, 64), tower_units=(32,)
        )

    tasks = [mk.Binary("income"), mk.Binary("never_married")]
    return compare("Census-Income", build, tasks, (train.features, train.labels),
                   (test.features, test.labels), ["auc"], args)  # fmt: skip


def multi_mnist(args: argparse.Namespace) -> dict | None:
    try:
        from mtl_keras.datasets import multi_mnist as load
    except ImportError:
        return None
    n = 60_000 if args.full else args.mnist_rows
    train, test = load(num_train=n, num_test=max(1000, n // 5), seed=args.seed)

    def build(tasks):
        return mk.builders.shared_bottom(
            keras.Input((36, 36, 1)), tasks, trunk_units=(256, 128), tower_units=(64,)
        )

    tasks = [mk.Multiclass("left", 10), mk.Multiclass("right", 10)]
    return compare("MultiMNIST", build, tasks, tuple(train), tuple(test), ["accuracy"], args)


def compare(name, build, tasks, train, test, metrics, args) -> dict:
    print(
        f"\n== {name}: {len(train[0][next(iter(train[0]))]) if isinstance(train[0], dict) else len(train[0])} train rows"
    )
    common = dict(epochs=args.epochs, batch_size=args.batch_size, eval_data=test)
    base = single_task_baselines(
        build, tasks, train, optimizer=lambda: keras.optimizers.Adam(1e-3),
        seed=args.seed, **common,
    )  # fmt: skip
    keras.utils.set_random_seed(args.seed)
    model = build(tasks)
    model.compile(keras.optimizers.Adam(1e-3))
    mtl = train_and_evaluate(model, train, **common)
    dm = delta_m(mtl.results, base.results, metrics=metrics)
    rows = []
    for t in tasks:
        for m in metrics:
            rows.append((t.name, m, base.results[t.name][m], mtl.results[t.name][m]))
    ratio = mtl.train_seconds / base.total_train_seconds
    for task, m, s, mt in rows:
        print(f"{task:15s} {m:9s} single {s:.4f}  multi {mt:.4f}")
    print(f"Δm = {dm.value:+.2f}%  |  MTL train {mtl.train_seconds:.1f}s / "
          f"single-task sum {base.total_train_seconds:.1f}s = {ratio:.2f}")  # fmt: skip
    return {"name": name, "rows": rows, "delta_m": dm.value, "mtl_s": mtl.train_seconds,
            "single_s": base.total_train_seconds}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="all rows (slow)")
    parser.add_argument("--train-rows", type=int, default=20_000, help="Census subsample")
    parser.add_argument("--mnist-rows", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.time()
    results = [census(args), multi_mnist(args)]
    print("\n| Data set | Task | Metric | Single-task | Multi-task |")
    print("|---|---|---|---|---|")
    for r in filter(None, results):
        for task, m, s, mt in r["rows"]:
            print(f"| {r['name']} | {task} | {m} | {s:.4f} | {mt:.4f} |")
    print("\n| Data set | Δm | MTL train time / Σ single-task train times |")
    print("|---|---|---|")
    for r in filter(None, results):
        print(f"| {r['name']} | {r['delta_m']:+.2f}% | {r['mtl_s']:.1f} s / "
              f"{r['single_s']:.1f} s = {r['mtl_s'] / r['single_s']:.2f} |")  # fmt: skip
    print(f"\nTotal {time.time() - started:.0f} s; settings: {vars(args)}")


if __name__ == "__main__":
    main()
