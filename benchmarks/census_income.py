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

`--ablation` instead trains the demo's recipe step by step (README,
"Accuracy on Census-Income"): the earlier demo (shared bottom, standardized
numerics, Adam, 4 epochs), + AdamW / warm-up + cosine over 12 epochs / early
stopping on the validation AUC, + piecewise-linear numerics, + bin
embeddings, + MMoE, + EMA of the weights (= `mtl-keras demo`), and in its
place periodic (PLR) numerics, or target-aware bins (`bins="target"`: each
numeric's bins from a tree on the training labels of both tasks). `--gbdt` adds LightGBM (one model per task, 500 trees; the `bench`
extra) on the same rows. Early stopping only ever looks at the validation
rows; the test rows are scored once, at the end.

    python benchmarks/census_income.py --ablation --gbdt [--seeds 0 1 2]

`--quick` runs the same on a 60,000-row subsample (54k train / 6k
validation / 60k test rows): minutes instead of an hour, and labelled as
such, since its AUCs are below the full data's.
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
from mtl_keras.datasets.census_income import (
    CATEGORICAL,
    LOG_FEATURES,
    NUMERIC,
    census_income,
    demo_early_stopping,
    demo_encoder,
    demo_model,
    demo_optimizer,
)
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


#: Ablation ladder: name -> (encoder recipe, architecture, schedule).
ABLATION = {
    "earlier demo (shared bottom, Adam, 4 epochs)": ("plain", "shared_bottom", "adam4"),
    "+ AdamW, warm-up + cosine, 12 epochs, early stopping": ("plain", "shared_bottom", "cosine"),
    "+ piecewise-linear numerics (32 quantile bins)": ("ple", "shared_bottom", "cosine"),
    "+ 8-dim bin embedding per numeric": ("best", "shared_bottom", "cosine"),
    "+ MMoE 6x(128-64), dropout 0.2": ("best", "mmoe", "cosine"),
    "+ EMA of the weights (0.999) (= mtl-keras demo)": ("best", "mmoe", "cosine_ema"),
    "periodic (PLR) numerics instead": ("periodic", "mmoe", "cosine_ema"),
    "target-aware bins (a tree on both tasks' labels) instead": ("target", "mmoe", "cosine_ema"),
}


def run_ablation(args: argparse.Namespace, train, val, test) -> list[dict]:
    """Trains every ABLATION row per seed; returns one dict per (row, seed)."""
    rows = []
    val_ds = mk.data.from_arrays(val.features, val.labels, batch_size=4096)
    test_ds = mk.data.from_arrays(test.features, batch_size=4096)
    for seed in args.seeds:
        train_ds = mk.data.from_arrays(
            train.features, train.labels, batch_size=args.batch_size, shuffle=True, seed=seed
        )
        steps = -(-len(train) // args.batch_size)
        for name, (recipe, arch, schedule) in ABLATION.items():
            if args.only and not any(o in name for o in args.only):
                continue
            keras.utils.set_random_seed(seed)
            encoder = demo_encoder(train.features, recipe, labels=train.labels)
            if arch == "mmoe":
                model = demo_model(encoder)
            else:
                tasks = [mk.Binary(t) for t in TASKS]
                model = mk.builders.shared_bottom(
                    encoder.inputs(), tasks, encoder=encoder, trunk_units=(256, 128),
                    tower_units=(64,), dropout=0.1)  # fmt: skip
            if schedule == "adam4":
                optimizer, epochs, callbacks = keras.optimizers.Adam(2e-3), 4, []
            else:
                # As `mtl-keras demo`: the EMA weights are swapped in for
                # validation, so early stopping judges (and restores) them.
                epochs = 12
                ema = 0.999 if schedule == "cosine_ema" else None
                optimizer = demo_optimizer(steps, epochs, 2e-3, ema_momentum=ema)
                swap = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if ema else []
                callbacks = [*swap, demo_early_stopping(TASKS, patience=4)]
            model.compile(optimizer, weighting="uncertainty")
            t0 = time.perf_counter()
            history = model.fit(train_ds, validation_data=val_ds, epochs=epochs,
                                callbacks=callbacks, verbose=0, shuffle=False)  # fmt: skip
            seconds = time.perf_counter() - t0
            out = {"name": name, "seed": seed, "seconds": seconds,
                   "epochs": len(history.history["loss"])}  # fmt: skip
            for split, ds, labels in (("val", val_ds, val.labels), ("test", test_ds, test.labels)):
                predictions = model.predict(ds, verbose=0)
                for t in TASKS:
                    pred = np.asarray(predictions[t]).reshape(-1)
                    out[f"{split}_{t}"] = roc_auc(labels[t], pred)
            rows.append(out)
            print(f"  seed {seed} {name}: test {out['test_income']:.4f} / "
                  f"{out['test_never_married']:.4f}, val {out['val_income']:.4f} / "
                  f"{out['val_never_married']:.4f}, {out['epochs']} epochs, {seconds:.0f} s",
                  flush=True)  # fmt: skip
    return rows


def run_gbdt(args: argparse.Namespace, train, val, test) -> list[dict]:
    """LightGBM, one binary model per task (500 trees), per seed."""
    try:
        import lightgbm
        import pandas as pd
    except ImportError as e:  # pragma: no cover - optional
        raise SystemExit(f"--gbdt needs LightGBM: pip install -e '.[bench]' ({e})") from None

    def frame(split):
        df = pd.DataFrame(split.features)
        for c in CATEGORICAL:
            # Categories seen in training only; unseen ones become missing.
            categories = sorted(set(train.features[c]))
            df[c] = pd.Categorical(df[c].where(df[c].isin(categories)), categories=categories)
        return df

    x_train, x_val, x_test = frame(train), frame(val), frame(test)
    rows = []
    for seed in args.seeds:
        out = {"name": "LightGBM (one model per task, 500 trees)", "seed": seed, "epochs": 0}
        t0 = time.perf_counter()
        for t in TASKS:
            clf = lightgbm.LGBMClassifier(n_estimators=500, learning_rate=0.05, num_leaves=63,
                                          subsample=0.8, subsample_freq=1, colsample_bytree=0.8,
                                          random_state=seed, verbose=-1)  # fmt: skip
            clf.fit(x_train, train.labels[t])
            out[f"val_{t}"] = roc_auc(val.labels[t], clf.predict_proba(x_val)[:, 1])
            out[f"test_{t}"] = roc_auc(test.labels[t], clf.predict_proba(x_test)[:, 1])
        out["seconds"] = time.perf_counter() - t0
        rows.append(out)
        print(
            f"  seed {seed} LightGBM: test {out['test_income']:.4f} / "
            f"{out['test_never_married']:.4f} ({out['seconds']:.0f} s)",
            flush=True,
        )
    return rows


def print_ablation(rows: list[dict]) -> None:
    """Markdown table: mean (min-max) over seeds per row."""
    print(
        "\n| recipe | test AUC `income` | test AUC `never_married` | val AUC income / "
        "never_married | epochs | train time |"
    )
    print("|---|---|---|---|---|---|")
    for name in dict.fromkeys(r["name"] for r in rows):
        group = [r for r in rows if r["name"] == name]

        def cell(key: str, group: list[dict] = group, digits: int = 4) -> str:
            v = np.array([r[key] for r in group])
            if len(v) == 1:
                return f"{v[0]:.{digits}f}"
            return f"{v.mean():.{digits}f} ({v.min():.{digits}f}-{v.max():.{digits}f})"

        print(f"| {name} | {cell('test_income')} | {cell('test_never_married')} | "
              f"{cell('val_income')} / {cell('val_never_married')} | "
              f"{np.mean([r['epochs'] for r in group]):.0f} | "
              f"{np.mean([r['seconds'] for r in group]):.0f} s |")  # fmt: skip


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
    parser.add_argument(
        "--quick", action="store_true", help="--subsample 60000 unless given: a smoke run"
    )
    parser.add_argument("--only", nargs="+", default=None, help="a subset of the models")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--ablation",
        action="store_true",
        help="the demo recipe step by step instead of the architectures",
    )
    parser.add_argument("--gbdt", action="store_true", help="also LightGBM (bench extra)")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="seeds for --ablation / --gbdt (default: --seed)",
    )
    args = parser.parse_args(argv)  # fmt: skip
    args.seeds = args.seeds or [args.seed]
    if args.quick and not args.subsample:
        args.subsample = 60_000
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
    if args.subsample:
        print(f"SUBSAMPLE of {args.subsample} rows: AUCs are not comparable to the full data's")
    if not (args.ablation or args.gbdt):
        print(f"Budget for every model: {args.epochs} epochs, batch {args.batch_size}, "
              f"Adam({args.learning_rate}), dropout {args.dropout}, weighting {args.weighting!r}, "
              f"seed {args.seed}")  # fmt: skip

    if args.ablation or args.gbdt:
        rows = run_ablation(args, train, val, test) if args.ablation else []
        rows += run_gbdt(args, train, val, test) if args.gbdt else []
        print_ablation(rows)
        print(f"\nTotal time: {time.time() - started:.0f} s")
        return 0

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
