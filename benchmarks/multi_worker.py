"""Multi-worker scaling: measured step time on this machine, collective
bytes per step, and a model of the speed-up on a real network.

    python benchmarks/multi_worker.py [--workers 1 2] [--steps 30] [--quick]

For each model ("demo": the `mtl-keras demo` shared bottom on Census-Income
read from TFRecord shards; "mmoe10m": an MMoE with ~10 M shared parameters
and 10 tasks on synthetic inputs) and weighting ("static"; "upgrad" full
parameter Jacobian; "upgrad@rep" representation Jacobian), it runs
`mtl_keras.distribute.launch --workers N` and reports, from the chief:

- median step time and examples/s at a fixed global batch;
- the bytes passed to collectives per step, recorded while the step is
  traced (`ReplicaContext.all_reduce` / `all_gather`, which both Keras's
  optimizer and mtl_keras use), split into gradient all-reduce (Keras),
  Jacobian all-reduce / all-gather (aggregators), the metric states
  (`mtl_keras.distribute.metric_sync`: logs from summed metric variables)
  and small scalars;
- a ring all-reduce model of the speed-up on N workers at 10/25/100 Gb/s:
  t(N) = t_compute(1)/N + sum over collectives of
  2(N-1)/N * bytes / bandwidth (all-reduce) or (N-1)/N * bytes / bandwidth
  (all-gather) + 2(N-1) * latency (latency 25 us per hop).

This machine has 2 CPU cores shared with other jobs: 2 workers here
compete for the same cores, so the measured numbers show overhead, not
speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = os.path.dirname(os.path.abspath(__file__))
LATENCY_S = 25e-6
BANDWIDTHS_GBPS = (10, 25, 100)
NODES = (2, 4, 8, 16, 32)
KINDS = ("gradients", "jacobian_all_reduce", "jacobian_all_gather", "metric_states", "scalars")


# ----------------------------------------------------------------- worker
def _record_collectives(log: dict) -> dict:
    """Counts the bytes every collective moves, at run time (shapes may be
    dynamic), by kind: Keras's gradient all-reduce (a list of tensors), a
    Jacobian all-reduce or all-gather, or a few scalars. Returns the counters."""
    import tensorflow as tf

    counters = {kind: tf.Variable(0, dtype=tf.int64, trainable=False) for kind in KINDS}

    def count(kind_of_value, value) -> None:
        parts = [t for t in tf.nest.flatten(value, expand_composites=True) if t is not None]
        static = sum(int(t.shape.num_elements() or 1 << 20) for t in parts)
        if not kind_of_value and "metric_states" in tf.get_current_name_scope():
            kind_of_value = "metric_states"
        kind = kind_of_value if kind_of_value else (
            "gradients" if len(parts) > 1 else "scalars" if static <= 1024 else "jacobian_all_reduce"
        )  # fmt: skip
        total = tf.add_n([tf.cast(tf.size(t), tf.int64) * t.dtype.size for t in parts])
        counters[kind].assign_add(total)

    reduce, gather = (
        tf.distribute.ReplicaContext.all_reduce,
        tf.distribute.ReplicaContext.all_gather,
    )

    def all_reduce(self, reduce_op, value, options=None):
        count(None, value)
        return reduce(self, reduce_op, value, options)

    def all_gather(self, value, axis, options=None):
        count("jacobian_all_gather", value)
        return gather(self, value, axis, options)

    tf.distribute.ReplicaContext.all_reduce = all_reduce
    tf.distribute.ReplicaContext.all_gather = all_gather
    return counters


def worker(args: argparse.Namespace) -> None:
    import numpy as np
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy() if "TF_CONFIG" in os.environ else None
    import keras

    import mtl_keras as mk
    from mtl_keras.data import files

    counters = _record_collectives({})
    scope = strategy.scope() if strategy else tf.distribute.get_strategy().scope()
    keras.utils.set_random_seed(0)
    with scope:
        if args.model == "demo":
            with open(os.path.join(args.data, "_encoder.json")) as f:
                encoder = mk.layers.TabularEncoder.from_config(json.load(f))
            tasks = [mk.Binary("income"), mk.Binary("never_married")]
            model = mk.builders.shared_bottom(
                encoder.inputs(), tasks, encoder=encoder, trunk_units=(256, 128),
                tower_units=(64,), dropout=0.1,
            )  # fmt: skip
            data = files.from_tfrecords(args.data, batch_size=args.batch, shuffle_buffer=4096,
                                        seed=0).repeat()  # fmt: skip
        else:
            tasks = [mk.Binary(f"t{i}") for i in range(10)]
            model = mk.builders.mmoe(
                keras.Input((512,), name="x"), tasks, num_experts=6,
                expert_units=(1024, 1024), tower_units=(32,),
            )  # fmt: skip
            rng = np.random.default_rng(0)
            x = rng.normal(size=(args.batch * 4, 512)).astype("float32")
            y = {t.name: (x[:, i] > 0).astype("float32") for i, t in enumerate(tasks)}
            data = tf.data.Dataset.from_tensor_slices((x, y)).batch(args.batch).repeat()
        weighting = args.weighting
        if weighting.endswith("@rep"):
            weighting = mk.weighting.STRATEGIES[weighting[:-4]](rep_grad=True)
        model.compile(keras.optimizers.SGD(0.01), weighting=weighting, jit_compile=False)

    times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.t = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter() - self.t)

    model.fit(data, steps_per_epoch=args.steps, epochs=1, verbose=0, callbacks=[Timer()])
    variables = model.trainable_variables
    shared, _, _ = model.variable_groups()
    warm = times[min(3, len(times) - 1) :]
    result = {
        "model": args.model,
        "weighting": args.weighting,
        "workers": int(strategy.num_replicas_in_sync) if strategy else 1,
        "batch": args.batch,
        "step_ms": 1000 * statistics.median(warm),
        "examples_per_s": args.batch / statistics.median(warm),
        "params": sum(int(np.prod(v.shape)) for v in variables),
        "tasks": len(tasks),
        "shared_params": sum(int(np.prod(variables[i].shape)) for i in shared),
        # bytes per step and replica (all-gather: this replica's block)
        "collectives": {k: int(v.numpy()) // args.steps for k, v in counters.items()},
    }
    if strategy is None or mk.distribute.is_chief(strategy):
        print("RESULT " + json.dumps(result), flush=True)


# ------------------------------------------------------------------ driver
def prepare_census(directory: str, rows: int, shards: int) -> None:
    import numpy as np

    import mtl_keras as mk
    from mtl_keras.data import files
    from mtl_keras.datasets.census_income import CATEGORICAL, LOG_FEATURES, NUMERIC, census_income

    train, _ = census_income()
    frame = train.frame if hasattr(train, "frame") else None
    order = np.random.default_rng(0).permutation(len(train))[:rows]
    part = train.take(order)
    import pandas as pd

    frame = pd.DataFrame({**part.features, **part.labels})
    files.write_tfrecords(frame, directory, list(part.features), {k: k for k in part.labels},
                          num_shards=shards)  # fmt: skip
    encoder = mk.layers.TabularEncoder.adapt(
        part.features, categorical=CATEGORICAL, numeric=NUMERIC, log_features=LOG_FEATURES,
        name="features",
    )  # fmt: skip
    with open(os.path.join(directory, "_encoder.json"), "w") as f:
        json.dump(encoder.get_config(), f)


def run(model: str, weighting: str, workers: int, args: argparse.Namespace) -> dict | None:
    command = [os.path.abspath(__file__), "--role", "worker", "--model", model,
               "--weighting", weighting, "--steps", str(args.steps), "--batch", str(args.batch),
               "--data", args.data]  # fmt: skip
    if workers == 1:
        proc = subprocess.run([sys.executable, *command], capture_output=True, text=True,
                              timeout=args.timeout)  # fmt: skip
    else:
        proc = subprocess.run(
            [sys.executable, "-m", "mtl_keras.distribute.launch", "--workers", str(workers),
             "--timeout", str(args.timeout), *command],
            capture_output=True, text=True, timeout=args.timeout + 60,
        )  # fmt: skip
    for line in proc.stdout.splitlines():
        if "RESULT " in line:
            return json.loads(line.split("RESULT ", 1)[1])
    print(f"{model}/{weighting}/{workers} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return None


def classify(collectives: dict, workers: int = 1) -> dict[str, int]:
    """Bytes per step by kind; an all-gather's input is one replica's block,
    the gathered (global-batch) size is `workers` times that, and does not
    depend on the worker count at a fixed global batch."""
    out = dict(collectives)
    out["jacobian_all_gather"] = out.get("jacobian_all_gather", 0) * workers
    out.setdefault("metric_states", 0)  # reports from before metric_sync
    return out


def speedup(t1: float, volumes: dict[str, int], n: int, gbps: float) -> float:
    """Modelled speed-up over 1 worker at a fixed global batch."""
    bandwidth = gbps * 1e9 / 8
    reduce_bytes = sum(
        volumes.get(k, 0) for k in ("gradients", "jacobian_all_reduce", "metric_states", "scalars")
    )
    comm = 2 * (n - 1) / n * reduce_bytes / bandwidth
    comm += (n - 1) / n * volumes["jacobian_all_gather"] / bandwidth
    comm += 2 * (n - 1) * LATENCY_S * 3  # ~3 collective rounds per step
    return t1 / (t1 / n + comm)


def report(results: list[dict], batch: int) -> None:
    """Prints the measured, byte and modelled speed-up tables."""
    print(
        "\nMeasured on this machine (2 shared CPU cores; global batch "
        f"{batch}; median step after 3 warm-up steps):\n"
    )
    print("| model | weighting | workers | step ms | examples/s | params | shared |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['model']} | {r['weighting']} | {r['workers']} | {r['step_ms']:.1f} | "
            f"{r['examples_per_s']:.0f} | {r['params']:,} | {r['shared_params']:,} |"
        )
    print(
        "\nCollective bytes per step (recorded at trace time on 2 workers; all-gather: the "
        "gathered global-batch size):\n"
    )
    print(
        "| model | weighting | gradients | Jacobian all-reduce | Jacobian all-gather | "
        "metric states | scalars |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    multi = {(r["model"], r["weighting"]): r for r in results if r["workers"] > 1}
    single = {(r["model"], r["weighting"]): r for r in results if r["workers"] == 1}
    volumes = {}
    for key, r in multi.items():
        v = classify(r["collectives"], r["workers"])
        volumes[key] = v
        print(
            f"| {key[0]} | {key[1]} | {v['gradients']:,} | {v['jacobian_all_reduce']:,} | "
            f"{v['jacobian_all_gather']:,} | {v['metric_states']:,} | {v['scalars']:,} |"
        )
    # A full parameter Jacobian all-reduces T x P_shared float32 (not run on
    # the 10M model here: 10 backward passes and ~400 MB per step).
    for key, r in list(multi.items()):
        if key[1] != "static" or (key[0], "upgrad") in multi:
            continue
        tasks = r.get("tasks", 10 if key[0] == "mmoe10m" else 2)
        v = dict(volumes[key], jacobian_all_reduce=4 * tasks * r["shared_params"])
        volumes[(key[0], "upgrad (bytes computed)")] = v
        single.setdefault((key[0], "upgrad (bytes computed)"), single.get(key))
        print(
            f"| {key[0]} | upgrad (computed, T x P_shared x 4) | {v['gradients']:,} | "
            f"{v['jacobian_all_reduce']:,} | 0 | {v['metric_states']:,} | {v['scalars']:,} |"
        )
    print(
        "\nModelled speed-up at a fixed global batch (ring all-reduce, "
        f"{LATENCY_S * 1e6:.0f} us per hop; compute time = 1-worker step here):\n"
    )
    print("| model | weighting | Gb/s | " + " | ".join(f"N={n}" for n in NODES) + " |")
    print("|---|---|---:|" + "---:|" * len(NODES))
    for key, v in volumes.items():
        if single.get(key) is None:
            continue
        t1 = single[key]["step_ms"] / 1000
        for gbps in BANDWIDTHS_GBPS:
            cells = " | ".join(f"{speedup(t1, v, n, gbps):.1f}" for n in NODES)
            print(f"| {key[0]} | {key[1]} | {gbps} | {cells} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--role", default="driver", choices=["driver", "worker"])
    p.add_argument("--model", default="demo", choices=["demo", "mmoe10m"])
    p.add_argument("--weighting", default="static")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--rows", type=int, default=40_000, help="Census rows written as shards")
    p.add_argument("--shards", type=int, default=8)
    p.add_argument("--data", default=None)
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--quick", action="store_true", help="demo/static only, few steps")
    p.add_argument("--out", default=None, help="write all results as JSON here")
    p.add_argument("--report", default=None, help="only print the tables of a --out JSON file")
    args = p.parse_args(argv)
    if args.report:
        with open(args.report) as f:
            saved = json.load(f)
        report(saved["results"], saved.get("batch", 512))
        return 0
    if args.role == "worker":
        worker(args)
        return 0
    if args.quick:
        args.steps, args.rows = min(args.steps, 12), min(args.rows, 8000)
    args.data = args.data or tempfile.mkdtemp(prefix="mtl_keras_census_shards_")
    if not os.path.exists(os.path.join(args.data, "_encoder.json")):
        prepare_census(args.data, args.rows, args.shards)
    configs = [("demo", "static"), ("demo", "upgrad"), ("demo", "upgrad@rep")]
    if not args.quick:
        configs += [("mmoe10m", "static"), ("mmoe10m", "upgrad@rep")]
    else:
        configs = configs[:1]
    results = []
    for model, weighting in configs:
        for workers in args.workers:
            if model == "mmoe10m" and workers > 2:
                continue
            r = run(model, weighting, workers, args)
            if r:
                results.append(r)
    report(results, args.batch)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"results": results, "batch": args.batch}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
