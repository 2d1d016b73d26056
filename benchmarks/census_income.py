"""Architectures on Census-Income: single-task, shared-bottom, MMoE, PLE.

The MMoE paper's setting (Ma et al., KDD 2018): the full UCI Census-Income
(KDD) split, tasks `income` and `never_married`, 10% of the 199,523 training
rows held out for validation, the exact test AUC on all 99,762 test rows.

Every model gets the same `TabularEncoder` (fitted once on the training rows,
a fresh copy per model, as in `mtl-keras demo`), the same optimizer, epochs
and batch size. "single-task" is one shared-bottom-style model per task
(same trunk and tower, one head); its parameter count and train time are
the sums over the two models. Expert sizes are chosen so that MMoE and PLE
have about as many parameters as the shared bottom (printed).

    python benchmarks/census_income.py [--epochs 4] [--subsample N] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf

import mtl_keras as mk
from mtl_keras.datasets.census_income import CATEGORICAL, LOG_FEATURES, NUMERIC, census_income
from mtl_keras.evaluation import roc_auc

TASKS = ("income", "never_married")


def architectures(args: argparse.Namespace) -> dict:
    """name -> builder(encoder, tasks). Widths: shared bottom as in the demo
    (256-128 trunk, 64 towers); MMoE 8 experts of 56 (the paper's 8 experts,
    narrowed to the shared bottom's size); PLE 2 levels of one shared and one
    task expert of 96 each (again about the shared bottom's size)."""
    common = dict(tower_units=(64,), dropout=args.dropout)
    return {
        "single-task": lambda enc, tasks: mk.builders.shared_bottom(
            enc.inputs(), tasks, encoder=enc, trunk_units=(256, 128), **common),
        "shared-bottom": lambda enc, tasks: mk.builders.shared_bottom(
            enc.inputs(), tasks, encoder=enc, trunk_units=(256, 128), **common),
        "MMoE": lambda enc, tasks: mk.builders.mmoe(
            enc.inputs(), tasks, encoder=enc, num_experts=args.mmoe_experts,
            expert_units=tuple(args.expert_units), **common),
        "PLE": lambda enc, tasks: mk.builders.ple(
            enc.inputs(), tasks, encoder=enc, num_levels=2, num_shared_experts=1,
            num_task_experts=1, expert_units=tuple(args.ple_expert_units), **common),
    }  # fmt: skip


def non_encoder_params(model: keras.Model) -> int:
    """Parameters outside the (shared, identical) TabularEncoder."""
    encoder = sum(
        layer.count_params()
        for layer in model.layers
        if isinstance(layer, mk.layers.TabularEncoder)
    )
    return model.count_params() - encoder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--weighting", default="static")
    parser.add_argument("--mmoe-experts", type=int, default=8)
    parser.add_argument("--expert-units", type=int, nargs="+", default=[56])
    parser.add_argument("--ple-expert-units", type=int, nargs="+", default=[96])
    parser.add_argument(
        "--subsample",
        type=int,
        default=None,
        help="use only this many train (and test) rows: a quick smoke run",
    )
    parser.add_argument("--only", nargs="+", default=None, help="a subset of the models")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)  # fmt: skip
    tf.get_logger().setLevel("ERROR")  # predict() retracing notes, one per new model

    started = time.time()
    train, test = census_income()
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(train))
    if args.subsample:
        order = order[: args.subsample]
        test = test.take(
            np.random.default_rng(args.seed + 1).permutation(len(test))[: args.subsample]
        )
    n_val = max(1, len(order) // 10)
    val, train = train.take(order[:n_val]), train.take(order[n_val:])
    print(f"Census-Income: {len(train)} train / {len(val)} validation / {len(test)} test rows")
    print(f"Budget for every model: {args.epochs} epochs, batch {args.batch_size}, "
          f"Adam({args.learning_rate}), dropout {args.dropout}, weighting {args.weighting!r}, "
          f"seed {args.seed}")  # fmt: skip

    encoder_config = mk.layers.TabularEncoder.adapt(
        train.features, categorical=CATEGORICAL, numeric=NUMERIC, log_features=LOG_FEATURES,
        name="features",
    ).get_config()  # fmt: skip
    train_ds = mk.data.from_arrays(
        train.features, train.labels, batch_size=args.batch_size, shuffle=True, seed=args.seed
    )
    val_ds = mk.data.from_arrays(val.features, batch_size=4096)
    test_ds = mk.data.from_arrays(test.features, batch_size=4096)

    def run(build, tasks: list[str]) -> dict:
        keras.utils.set_random_seed(args.seed)  # same seed, same data order for every model
        encoder = mk.layers.TabularEncoder.from_config(encoder_config)
        model = build(encoder, [mk.Binary(t) for t in tasks])
        model.compile(keras.optimizers.Adam(args.learning_rate), weighting=args.weighting)
        data = train_ds
        if len(tasks) < len(TASKS):
            data = train_ds.map(lambda x, y: (x, {t: y[t] for t in tasks}))
        t0 = time.perf_counter()
        model.fit(data, epochs=args.epochs, verbose=0, shuffle=False)
        seconds = time.perf_counter() - t0
        print(f"  trained {model.name} on {tasks} in {seconds:.0f} s", flush=True)
        out = {"seconds": seconds, "params": model.count_params(),
               "params_no_encoder": non_encoder_params(model)}  # fmt: skip
        for split, ds, labels in (("val", val_ds, val.labels), ("test", test_ds, test.labels)):
            predictions = model.predict(ds, verbose=0)
            for t in tasks:
                out[f"{split}_{t}"] = roc_auc(labels[t], np.asarray(predictions[t]).reshape(-1))
        return out

    results = {}
    for name, build in architectures(args).items():
        if args.only and name not in args.only:
            continue
        if name == "single-task":
            parts = [run(build, [t]) for t in TASKS]
            result = {
                k: sum(p[k] for p in parts) for k in ("seconds", "params", "params_no_encoder")
            }
            for p in parts:
                result.update({k: v for k, v in p.items() if k.startswith(("val_", "test_"))})
        else:
            result = run(build, list(TASKS))
        results[name] = result
        print(f"{name:14s} test AUC income {result['test_income']:.4f}  "
              f"never_married {result['test_never_married']:.4f}  "
              f"({result['seconds']:.0f} s, {result['params']:,} params)", flush=True)  # fmt: skip

    print(
        "\n| model | test AUC `income` | test AUC `never_married` | val AUC income / never_married "
        "| params (without encoder) | train time |"
    )
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['test_income']:.4f} | {r['test_never_married']:.4f} | "
              f"{r['val_income']:.4f} / {r['val_never_married']:.4f} | "
              f"{r['params']:,} ({r['params_no_encoder']:,}) | {r['seconds']:.0f} s |")  # fmt: skip
    print(f"\nTotal time: {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
