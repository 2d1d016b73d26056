"""How step time grows with the number of tasks T and shared parameters P.

One shared-bottom MLP (input 64, trunk of `depth` Dense layers of width W,
linear regression heads), batch 256, compiled as users compile it
(`MultiTaskModel.compile` defaults). Four kinds of strategy:

- `static`: one backward pass of the summed loss: O(P) per step, flat in T
  (the heads add O(T·W)).
- `uncertainty` (a loss weighting): the same single backward pass.
- `upgrad@rep` (rep_grad aggregator): T pull-backs of the (batch x W)
  representation only, a T x T Gramian of representation gradients, the
  solver (O(T^3)), then one backward pass through the trunk: ~O(P + T·B·W + T^3).
- `upgrad` (full-Jacobian aggregator): the T x P Jacobian of the shared
  parameters (T backward passes, or one vectorised pull-back), its Gramian
  (O(T^2·P)) and the solver (O(T^3)): ~O(T·P + T^2·P + T^3), memory O(T·P).

Step time is the median over `--rounds` blocks of `train_function` calls
(32 steps each), strategies interleaved within a round so that machine load
hits all alike. Peak memory of the static and the full-Jacobian step is
measured in a fresh subprocess per T (`peak_memory_mb`: TensorFlow's own
allocator statistics, the peak of live tensors during steady-state steps
above what is allocated before them) and printed next to T·P·4 bytes, the
size of the Jacobian itself.

    python benchmarks/cost_curves.py [--quick] [--tasks 2 4 8 16 32]
        [--widths 64 128 256 512] [--png benchmarks/results/cost_curves.png]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

STRATEGIES = ["static", "uncertainty", "upgrad@rep", "upgrad"]
BATCH, INPUT, DEPTH = 256, 64, 3
#: compile kwargs for every strategy (`--jit-compile` sets one for all)
COMPILE_KWARGS: dict[str, Any] = {}


def build(num_tasks: int, width: int, label: str) -> Any:
    import keras

    import mtl_keras as mk
    from mtl_keras import weighting

    keras.utils.set_random_seed(0)
    tasks = [mk.Regression(f"t{i}") for i in range(num_tasks)]
    model = mk.builders.shared_bottom(
        keras.Input((INPUT,), name="x"), tasks, trunk_units=(width,) * DEPTH, tower_units=()
    )
    name, _, rep = label.partition("@")
    strategy = weighting.STRATEGIES[name](rep_grad=True) if rep else weighting.STRATEGIES[name]()
    model.compile(keras.optimizers.SGD(1e-4), weighting=strategy, **COMPILE_KWARGS)
    return model


def shared_params(width: int) -> int:
    return INPUT * width + width + (DEPTH - 1) * (width * width + width)


def data(num_tasks: int) -> Any:
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, INPUT)).astype("float32")
    y = {f"t{i}": rng.normal(size=(BATCH,)).astype("float32") for i in range(num_tasks)}
    return iter(tf.data.Dataset.from_tensors((x, y)).repeat())


def time_point(num_tasks: int, width: int, rounds: int, calls: int) -> dict[str, float]:
    """Median ms/step of every strategy at one (T, W), interleaved per round."""
    import numpy as np

    runs = {}
    for label in STRATEGIES:
        model = build(num_tasks, width, label)
        model.make_train_function()
        it = data(num_tasks)
        model.train_function(it)  # trace and compile
        runs[label] = (model, it)
    times: dict[str, list[float]] = {label: [] for label in runs}
    order = list(runs)
    for _ in range(rounds):
        np.random.default_rng(len(times["static"])).shuffle(order)
        for label in order:
            model, it = runs[label]
            start = time.perf_counter()
            for _ in range(calls):
                logs = model.train_function(it)
            float(logs["loss"])
            times[label].append((time.perf_counter() - start) / (calls * model.steps_per_execution))
    return {label: 1e3 * statistics.median(v) for label, v in times.items()}


_MEMORY = """
import json, sys
sys.path.insert(0, {root!r})
import tensorflow as tf
from benchmarks.cost_curves import build, data
import benchmarks.cost_curves as cc; cc.COMPILE_KWARGS.update({kwargs!r})

out = {{}}
for label in ("static", "upgrad"):
    model = build({t}, {w}, label); model.make_train_function(); it = data({t})
    for _ in range(2):  # trace, compile, warm up
        float(model.train_function(it)["loss"])
    before = tf.config.experimental.get_memory_info("CPU:0")["current"]
    tf.config.experimental.reset_memory_stats("CPU:0")
    for _ in range(3):
        float(model.train_function(it)["loss"])
    out[label] = (tf.config.experimental.get_memory_info("CPU:0")["peak"] - before) / 2**20
print(json.dumps(out))
"""


def peak_memory_mb(num_tasks: int, width: int) -> dict[str, float]:
    """Peak memory (MB) of live tensors a training step adds above what is
    allocated before it, for the static and the full-Jacobian (`upgrad`)
    step, in a fresh process.

    TensorFlow's CPU allocator keeps freed memory, so RSS only shows a
    high-water mark that includes compilation. Instead the subprocess runs
    with `TF_CPU_ALLOCATOR_USE_BFC=true`, which gives the CPU device the
    allocator GPUs use, with its statistics:
    `tf.config.experimental.get_memory_info("CPU:0")` after
    `reset_memory_stats` reports the steps' peak (activations, Jacobian,
    Gramian, gradients, XLA's temporary buffers).
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = _MEMORY.format(root=root, t=num_tasks, w=width, kwargs=COMPILE_KWARGS)
    env = {**os.environ, "TF_CPU_ALLOCATOR_USE_BFC": "true"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=900, check=True,
        env=env,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def plot(results: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    import numpy as np

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    tasks, w0 = results["tasks"], results["width_for_tasks"]
    ax = axes[0]
    for label in STRATEGIES:
        ax.plot(tasks, [results["by_tasks"][str(t)][label] for t in tasks], "o-", label=label)
    ref = results["by_tasks"][str(tasks[0])]["upgrad"]
    ts = np.array(tasks, float)
    ax.plot(ts, ref * ts / ts[0], "k:", label="∝ T (Jacobian)")
    ax.plot(ts, ref * (ts / ts[0]) ** 2, "k--", alpha=0.5, label="∝ T² (Gramian)")
    ax.set(xscale="log", yscale="log", xlabel="tasks T", ylabel="ms / step",
           title=f"step time vs T (P = {shared_params(w0):,})")  # fmt: skip
    ax.set_xticks(tasks, [str(t) for t in tasks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.legend(fontsize=8)

    ax = axes[1]
    widths, t0 = results["widths"], results["tasks_for_widths"]
    ps = np.array([shared_params(w) for w in widths], float)
    for label in STRATEGIES:
        ax.plot(ps, [results["by_width"][str(w)][label] for w in widths], "o-", label=label)
    ref = results["by_width"][str(widths[0])]["upgrad"]
    ax.plot(ps, ref * ps / ps[0], "k:", label="∝ P")
    ax.set(xscale="log", yscale="log", xlabel="shared parameters P", ylabel="ms / step",
           title=f"step time vs P (T = {t0})")  # fmt: skip
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.legend(fontsize=8)

    ax = axes[2]
    mem = results.get("memory", {})
    if mem:
        tp = np.array([t * shared_params(w0) for t in tasks if str(t) in mem], float)
        ax.plot(
            tp, [mem[str(t)] for t in tasks if str(t) in mem], "o-", label="upgrad (full Jacobian)"
        )
        static = results.get("memory_static", {})
        if static:
            ax.plot(tp, [static[str(t)] for t in tasks if str(t) in mem], "o-", label="static")
        ax.plot(tp, tp * 4 / 2**20, "k:", label="T·P float32 (the Jacobian)")
        ax.set(xscale="log", yscale="log", xlabel="T·P", ylabel="step peak of live tensors (MB)",
               title="full-Jacobian step: memory vs T·P")  # fmt: skip
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "memory not measured", ha="center", va="center")
        ax.set_axis_off()
    fig.suptitle(results["note"], fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--width-for-tasks", type=int, default=256)
    parser.add_argument("--tasks-for-widths", type=int, default=8)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument(
        "--memory-only", action="store_true", help="only the memory table (no timing, no plot)"
    )
    parser.add_argument(
        "--jit-compile",
        choices=["true", "false"],
        default=None,
        help="one XLA setting for every strategy (default: compile defaults)",
    )
    parser.add_argument("--png", default=None, help="write the plot here")
    parser.add_argument("--json", default=None, help="write the numbers here")
    parser.add_argument("--note", default="", help="subtitle, e.g. the machine state")
    parser.add_argument(
        "--replot", default=None, metavar="JSON", help="only redraw --png from a --json file"
    )
    args = parser.parse_args(argv)
    if args.replot:
        with open(args.replot) as f:
            plot(json.load(f), args.png or "cost_curves.png")
        return 0
    rounds, calls = (2, 1) if args.quick else (5, 2)
    if args.jit_compile:
        COMPILE_KWARGS["jit_compile"] = args.jit_compile == "true"

    results: dict[str, Any] = {
        "tasks": args.tasks, "widths": args.widths, "width_for_tasks": args.width_for_tasks,
        "tasks_for_widths": args.tasks_for_widths, "by_tasks": {}, "by_width": {},
        "note": args.note or f"batch {BATCH}, trunk {DEPTH} x W, median of {rounds} rounds",
    }  # fmt: skip
    if not args.memory_only:
        print(f"| T | W | P | {' | '.join(STRATEGIES)} |  (ms/step)")
        print("|---|---|---|" + "---|" * len(STRATEGIES))
    points = [(t, args.width_for_tasks) for t in args.tasks]
    points += [(args.tasks_for_widths, w) for w in args.widths if w != args.width_for_tasks]
    if args.memory_only:
        points, args.png = [], None
    for t, w in points:
        ms = time_point(t, w, rounds, calls)
        if w == args.width_for_tasks:
            results["by_tasks"][str(t)] = ms
        if t == args.tasks_for_widths:
            results["by_width"][str(w)] = ms
        cells = " | ".join(f"{ms[s]:.2f}" for s in STRATEGIES)
        print(f"| {t} | {w} | {shared_params(w):,} | {cells} |", flush=True)
    if not args.no_memory:
        results["memory"] = {}
        print(
            "\n| T | T·P (M floats) | Jacobian T·P·4 (MB) | step peak of live tensors (MB): "
            "full-Jacobian | static |"
        )
        print("|---|---|---|---|---|")
        for t in args.tasks:
            mb = peak_memory_mb(t, args.width_for_tasks)
            results["memory"][str(t)] = mb["upgrad"]
            results.setdefault("memory_static", {})[str(t)] = mb["static"]
            tp = t * shared_params(args.width_for_tasks)
            print(f"| {t} | {tp / 1e6:.2f} | {tp * 4 / 2**20:.1f} | {mb['upgrad']:.1f} | "
                  f"{mb['static']:.1f} |", flush=True)  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if args.png:
        plot(results, args.png)
        print(f"\nplot: {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
