"""`mtl-keras` command line: `demo` trains on Census-Income and exports, `launch` runs N workers.

mtl-keras demo [--epochs N] [--batch-size B] [--weighting NAME]
               [--subsample N] [--log-dir runs] [--export-dir saved_models]
mtl-keras launch --workers 2 [--timeout S] train.py [script args]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _format_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(_fmt(r[c])) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines.append("  ".join("-" * widths[c] for c in columns))
    for r in rows:
        lines.append("  ".join(_fmt(r[c]).ljust(widths[c]) for c in columns))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def run_demo(
    epochs: int = 12,
    batch_size: int = 512,
    weighting: str = "uncertainty",
    subsample: int | None = None,
    log_dir: str = "runs/census_income",
    export_dir: str = "saved_models/census_income",
    learning_rate: float = 2e-3,
    seed: int = 0,
    verbose: int | str = "auto",
    patience: int = 4,
    weight_decay: float = 1e-4,
    ema_momentum: float | None = 0.999,
) -> dict[str, Any]:
    """Trains an MMoE model on Census-Income, reports per-task test results
    and exports a SavedModel for TF Serving. Returns the results.

    The recipe: piecewise-linear numeric embeddings, MMoE (6 experts of
    128-64), AdamW with one warm-up epoch then cosine decay over `epochs`,
    early stopping on the validation split (10 % of the training rows) with
    `patience` epochs, restoring the best weights; validation, early stopping
    and the final model use an exponential moving average of the weights
    (`ema_momentum`, None to disable)."""
    import keras
    import numpy as np

    import mtl_keras as mk
    from mtl_keras.callbacks import TaskTensorBoard
    from mtl_keras.datasets.census_income import (
        TASKS,
        census_income,
        demo_early_stopping,
        demo_encoder,
        demo_model,
        demo_optimizer,
    )
    from mtl_keras.evaluation import binary_report
    from mtl_keras.export import export_saved_model

    keras.utils.set_random_seed(seed)
    started = time.time()
    train, test = census_income()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train))
    if subsample:
        order = order[:subsample]
        test = test.take(np.random.default_rng(seed + 1).permutation(len(test))[:subsample])
    n_val = max(1, len(order) // 10)
    val, train = train.take(order[:n_val]), train.take(order[n_val:])
    print(f"Census-Income: {len(train)} train / {len(val)} validation / {len(test)} test rows")

    # The recipe measured best on validation in benchmarks/census_income.py
    # (README, "Accuracy on Census-Income"): MMoE over piecewise-linear
    # numerics whose bins a tree fits on both tasks' training labels.
    encoder = demo_encoder(train.features, "target", labels=train.labels)
    model = demo_model(encoder, name="census_mmoe")
    steps_per_epoch = -(-len(train) // batch_size)
    if ema_momentum and epochs * steps_per_epoch < 2 / (1 - ema_momentum):
        # Too few steps for the average to forget the initial weights.
        print(f"EMA off: {epochs * steps_per_epoch} steps are too few for momentum {ema_momentum}")
        ema_momentum = None
    optimizer = demo_optimizer(
        steps_per_epoch, epochs, learning_rate, weight_decay=weight_decay,
        ema_momentum=ema_momentum,
    )  # fmt: skip
    model.compile(optimizer, weighting=weighting)
    train_ds = mk.data.from_arrays(
        train.features, train.labels, batch_size=batch_size, shuffle=True, seed=seed
    )
    val_ds = mk.data.from_arrays(val.features, val.labels, batch_size=4096)
    test_ds = mk.data.from_arrays(test.features, batch_size=4096)
    # A fixed validation batch for the task-to-task gradient-similarity panel.
    probe = val.take(np.arange(min(len(val), 1024)))
    board = TaskTensorBoard(
        log_dir,
        update_freq=max(1, steps_per_epoch // 8),
        gradient_similarity_freq=max(1, steps_per_epoch // 4),
        similarity_data=(probe.features, probe.labels),
    )
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=epochs,
        callbacks=[
            board,
            # EMA weights for validation and early stopping (swapped before it).
            *([keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if ema_momentum else []),
            demo_early_stopping(TASKS, patience),
        ],
        shuffle=False,  # the dataset reshuffles every epoch itself
        verbose=verbose,
    )
    predictions = model.predict(test_ds, verbose=0)
    rows = []
    for task in model.tasks:
        report = binary_report(test.labels[task.name], predictions[task.name])
        rows.append({"task": task.name, **report})
    print("\nTest set (exact AUC):")
    print(
        _format_table(
            rows, ["task", "auc", "accuracy", "positive_rate", "predicted_positive_rate", "rows"]
        )
    )
    # Real test rows as TF Serving warm-up requests, and a signature that
    # serves the income task alone.
    warmup = {name: values[:4] for name, values in test.features.items()}
    path = export_saved_model(
        model, export_dir, signatures={"income_only": ["income"]}, warmup_examples=warmup
    )
    elapsed = time.time() - started
    print(f"\nSavedModel for TF Serving: {path}")
    print(f"TensorBoard: tensorboard --logdir {os.path.dirname(log_dir.rstrip('/')) or log_dir}")
    print(f"Total time: {elapsed:.0f} s")
    return {"results": {r["task"]: r for r in rows}, "export_path": path, "seconds": elapsed}


LAUNCH_EPILOG = """\
multi-worker training (MultiWorkerMirroredStrategy, see README "Scaling out"):
  mtl-keras launch --workers 2 [--timeout S] train.py [args]
      runs train.py as 2 workers on 127.0.0.1: TF_CONFIG and MTL_KERAS_WORKER
      set per worker (worker 0 is the chief), output prefixed [worker i]; when
      one worker fails the others are stopped and its exit code is returned
      (124 on timeout). Restart the job to resume from BackupAndRestore.
  On a cluster, run the same train.py on every host with TF_CONFIG from the
  orchestrator (Kubernetes TFJob, Vertex AI); with Ray, call it from
  ray.train.tensorflow.TensorflowTrainer (pip install mtl_keras[distributed]).
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mtl-keras",
        description=__doc__.split("\n")[0],
        epilog=LAUNCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train on Census-Income, report per task, export")
    demo.add_argument("--epochs", type=int, default=12)
    demo.add_argument("--batch-size", type=int, default=512)
    demo.add_argument(
        "--weighting",
        default="uncertainty",
        help="a strategy name from mtl_keras.weighting.STRATEGIES",
    )
    demo.add_argument(
        "--subsample",
        type=int,
        default=None,
        help="use only this many train (and test) rows, for quick runs",
    )
    demo.add_argument("--learning-rate", type=float, default=2e-3)
    demo.add_argument("--log-dir", default="runs/census_income")
    demo.add_argument("--export-dir", default="saved_models/census_income")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--ema-momentum",
        type=float,
        default=0.999,
        help="moving average of the weights for validation and export (0: off)",
    )
    demo.add_argument(
        "--patience",
        type=int,
        default=4,
        help="early-stopping patience (epochs) on the validation AUC",
    )
    from mtl_keras.distribute import launch as launch_lib

    launch = sub.add_parser(
        "launch",
        help="run a script as N MultiWorkerMirroredStrategy workers on 127.0.0.1",
        description=launch_lib.__doc__.split("\n\n")[1],
    )
    launch_lib.add_arguments(launch)
    args = parser.parse_args(argv)
    if args.command == "launch":
        return launch_lib.run(args)
    if args.command == "demo":
        run_demo(
            epochs=args.epochs,
            batch_size=args.batch_size,
            weighting=args.weighting,
            subsample=args.subsample,
            log_dir=args.log_dir,
            export_dir=args.export_dir,
            learning_rate=args.learning_rate,
            seed=args.seed,
            patience=args.patience,
            ema_momentum=args.ema_momentum or None,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
