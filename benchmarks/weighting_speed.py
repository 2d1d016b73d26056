"""Step time of every weighting strategy relative to `Static` (issue #3).

Same MLP for all: input 64, shared trunk 3 x 256 (ReLU), T linear regression
heads (T = 3 and 8), batch 256, SGD, compiled as users compile it: no
`jit_compile` / `steps_per_execution` argument, so `MultiTaskModel.compile`'s
defaults apply (`mtl_keras.compile_defaults`); `--jit-compile`
and `--steps-per-execution` override them for every row. Strategies are
timed in alternation over rounds, in a new random order every round, each
block of steps next to a block of `Static` steps; the median over
blocks of the ratio to its `Static` block is reported (so that load from
other processes, which drifts, hits both sides of a ratio alike). Aggregators run in full-Jacobian
mode (both Jacobian methods for a few of them) and in `rep_grad` mode.

When torch and torchjd are installed (here or in `--torch-python`),
torchjd's `mtl_backward` + `jac_to_grad` on the same MLP and thread count is
timed in a separate process (importing torch after TensorFlow can crash),
one block right after each of our full-Jacobian blocks of the same method,
and the table shows the median over rounds of our block time divided by
torchjd's.

    python benchmarks/weighting_speed.py [--quick] [--threads N] [--only LABEL ...]
        [--torch-python PATH]

`--goals` instead measures issue #15's goals table in one run (plain step vs
PyTorch, every full-Jacobian aggregator vs torchjd, every `rep_grad`
aggregator vs Static, at T = 3 and 8, `--rounds` consecutive runs reported
separately; see `benchmarks/speed_goals.py`) and writes it to
benchmarks/results/goals.md (~10 min on 2 quiet cores):

    python benchmarks/weighting_speed.py --goals --torch-python /path/to/torch/python
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

LOSS_WEIGHTINGS = [
    "static", "uncertainty", "dwa", "rlw", "famo", "gradnorm", "imtl_l", "geometric_mean",
]  # fmt: skip
AGGREGATORS = [
    "pcgrad", "mgda", "cagrad", "nash_mtl", "imtl_g", "upgrad", "aligned_mtl",
    "graddrop", "gradvac", "dualproj", "config",
]  # fmt: skip
#: pause when switching between our process and torchjd's
SETTLE_SECONDS = 0.05
#: aggregators also timed with the other Jacobian method
METHOD_PROBES = ["upgrad", "mgda"]

# torchjd's names for our aggregators (constructor source, evaluated in torch).
TORCHJD = {
    "pcgrad": "PCGrad()", "mgda": "MGDA()", "cagrad": "CAGrad(c=0.5)",
    "nash_mtl": "NashMTL(n_tasks=T)", "imtl_g": "IMTLG()", "upgrad": "UPGrad()",
    "aligned_mtl": "AlignedMTL()", "graddrop": "GradDrop()", "gradvac": "GradVac()",
    "dualproj": "DualProj()", "config": "ConFIG()",
}  # fmt: skip

TORCH_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import torch
    from torchjd import aggregation as A
    from torchjd.autojac import jac_to_grad, mtl_backward

    T, threads, names = json.loads(sys.argv[1])
    ctors = json.loads(sys.argv[2])
    if threads:  # else torch's default (the machine's cores), as users run it
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    trunk = torch.nn.Sequential(
        torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
        torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU())
    heads = torch.nn.ModuleList(torch.nn.Linear(256, 1) for _ in range(T))
    params = list(trunk.parameters()) + list(heads.parameters())
    opt = torch.optim.SGD(params, lr=1e-3)
    x, y = torch.randn(256, 64), torch.randn(256, T)

    def step(agg):
        feat = trunk(x)
        losses = [((h(feat)[:, 0] - y[:, t]) ** 2).mean() for t, h in enumerate(heads)]
        if agg is None:
            torch.stack(losses).sum().backward()
        else:
            mtl_backward(losses, features=feat)
            jac_to_grad(list(trunk.parameters()), agg)
        opt.step()
        opt.zero_grad()

    aggs = {}
    for n in names:
        try:
            aggs[n] = None if n == "static" else eval("A." + ctors[n], {"A": A, "T": T})
            for _ in range(3):
                step(aggs[n])
        except Exception as e:  # reported as missing
            print(f"torchjd {n}: {type(e).__name__}: {e}", file=sys.stderr)
            aggs.pop(n, None)
    # Serve timing requests ("<name> <steps>" per line) so that each torchjd
    # block is timed right next to the same method's Keras block.
    print("READY" + json.dumps(list(aggs)), flush=True)
    for line in sys.stdin:
        n, k = line.split()
        start = time.perf_counter()
        for _ in range(int(k)):
            step(aggs[n])
        print(json.dumps((time.perf_counter() - start) / int(k)), flush=True)
    """
)


#: compile kwargs shared by every row (set from the command line)
COMPILE_KWARGS: dict[str, Any] = {}


def _build(num_tasks: int, strategy: Any) -> Any:
    import keras

    import mtl_keras as mk

    keras.utils.set_random_seed(0)
    tasks = [mk.Regression(f"t{i}") for i in range(num_tasks)]
    model = mk.builders.shared_bottom(
        keras.Input((64,), name="x"), tasks, trunk_units=(256, 256, 256), tower_units=()
    )
    model.compile(keras.optimizers.SGD(1e-3), weighting=strategy, **COMPILE_KWARGS)
    return model


def _variants(num_tasks: int) -> list[tuple[str, str, Any]]:
    """(label, jacobian method, strategy factory) for every timed setup."""
    from mtl_keras import weighting

    out: list[tuple[str, str, Any]] = []
    for name in LOSS_WEIGHTINGS:
        out.append((name, "pfor", lambda n=name: weighting.STRATEGIES[n]()))
    out.append(("gradnorm@rep", "pfor", lambda: weighting.GradNorm(rep_grad=True)))
    for name in AGGREGATORS:
        out.append((name, "pfor", lambda n=name: weighting.STRATEGIES[n]()))
        out.append((f"{name}@rep", "pfor", lambda n=name: weighting.STRATEGIES[n](rep_grad=True)))
    for name in METHOD_PROBES:
        out.append((f"{name}@loop", "loop", lambda n=name: weighting.STRATEGIES[n]()))
    return out


def time_ours(
    num_tasks: int,
    rounds: int,
    steps: int,
    only: list[str] | None = None,
    torch: TorchTimer | None = None,
) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Median step times, median ratios to Static, and (with `torch`) median
    ratios of our full-Jacobian blocks to torchjd blocks timed right after."""
    import numpy as np
    import tensorflow as tf

    from mtl_keras.weighting import jacobian

    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 64)).astype("float32")
    y = {f"t{i}": rng.normal(size=(256,)).astype("float32") for i in range(num_tasks)}
    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    runs = {}
    for label, method, factory in _variants(num_tasks):
        if only and label != "static" and label not in only:
            continue
        jacobian.JACOBIAN_METHOD = method  # read while tracing
        model = _build(num_tasks, factory())
        model.make_train_function()
        it = iter(data)
        for _ in range(3):  # trace, compile, warm up
            model.train_function(it)
        runs[label] = (model, it)
    jacobian.JACOBIAN_METHOD = "pfor"
    times: dict[str, list[float]] = {label: [] for label in runs}
    ratios_per_block: dict[str, list[float]] = {label: [] for label in runs}
    torch_times: dict[str, list[float]] = {
        label: [] for label in (torch.names if torch is not None else [])
    }
    vs_torch: dict[str, list[float]] = {label: [] for label in torch_times}

    def block(label: str) -> float:
        # One train_function call runs steps_per_execution steps, as in fit.
        model, it = runs[label]
        per_call = int(model.steps_per_execution)
        calls = max(1, round(steps / per_call))
        start = time.perf_counter()
        for _ in range(calls):
            logs = model.train_function(it)
        float(logs["loss"])  # wait for the last step
        return (time.perf_counter() - start) / (calls * per_call)

    # The first call of each model after the others were built is slow
    # (~150 ms once per model): one untimed block each before timing.
    for label in runs:
        block(label)
    order = [label for label in runs if label != "static"]
    shuffler = np.random.default_rng(1)
    for r in range(rounds):
        # A new order every round, and every block paired with a Static block
        # timed next to it (before it in even rounds, after in odd ones): the
        # ratio then sees the same machine state (load drifts within a round).
        shuffler.shuffle(order)
        for label in order:
            paired = torch is not None and label in torch.names
            if paired and r % 2 == 1:
                theirs = torch.block(label, steps)
            if r % 2 == 0:
                base, value = block("static"), block(label)
            else:
                value, base = block(label), block("static")
            if paired and r % 2 == 0:
                theirs = torch.block(label, steps)
            times["static"].append(base)
            times[label].append(value)
            ratios_per_block[label].append(value / base)
            if paired:
                torch_times[label].append(theirs)
                vs_torch[label].append(value / theirs)
        if torch is not None:
            torch_times["static"].append(torch.block("static", steps))
    ratios = {label: statistics.median(v) for label, v in ratios_per_block.items() if v}
    ratios["static"] = 1.0
    versus = {label: statistics.median(v) for label, v in vs_torch.items() if v}
    versus.update({
        f"torch:{label}": statistics.median(v) for label, v in torch_times.items() if v
    })  # fmt: skip
    return {label: statistics.median(v) for label, v in times.items()}, ratios, versus


class TorchTimer:
    """torchjd timed in its own process (importing torch after TensorFlow can
    crash), one block of steps per request, so that its blocks interleave
    with ours and both see the same machine state."""

    def __init__(self, python: str, num_tasks: int, threads: int | None, names: list[str]) -> None:
        args = json.dumps([num_tasks, threads, ["static", *names]])
        self.proc = subprocess.Popen(
            [python, "-c", TORCH_SCRIPT, args, json.dumps(TORCHJD)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.names: list[str] = []
        for line in self.proc.stdout:
            if line.startswith("READY"):
                self.names = json.loads(line[len("READY") :])
                break
        if not self.names:
            raise RuntimeError("the torchjd process did not start (see its stderr above)")

    def block(self, name: str, steps: int) -> float:
        # Let TensorFlow's worker threads stop spinning before torch runs,
        # and torch's before ours run again.
        time.sleep(SETTLE_SECONDS)
        self.proc.stdin.write(f"{name} {steps}\n")
        self.proc.stdin.flush()
        seconds = float(json.loads(self.proc.stdout.readline()))
        time.sleep(SETTLE_SECONDS)
        return seconds

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def torch_timer(
    python: str | None, num_tasks: int, threads: int | None, only: list[str] | None
) -> TorchTimer | None:
    if python is None:
        if importlib.util.find_spec("torch") is None or importlib.util.find_spec("torchjd") is None:
            return None
        python = sys.executable
    names = [n for n in AGGREGATORS if not only or n in only]
    return TorchTimer(python, num_tasks, threads, names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and steps")
    parser.add_argument(
        "--threads", type=int, default=None,
        help="intra/inter-op threads of both frameworks (default: each one's own default, "
        "as users run them; earlier README tables used 2)",
    )  # fmt: skip
    parser.add_argument("--tasks", type=int, nargs="+", default=[3, 8])
    parser.add_argument(
        "--only", nargs="+", metavar="LABEL",
        help="time only these rows (e.g. upgrad@rep gradnorm), next to static",
    )  # fmt: skip
    parser.add_argument(
        "--torch-python", metavar="PATH",
        help="interpreter with torch and torchjd (default: this one, if it has them)",
    )  # fmt: skip
    parser.add_argument(
        "--jit-compile",
        choices=["true", "false", "auto"],
        default=None,
        help="override the compile default for every row",
    )
    parser.add_argument(
        "--steps-per-execution",
        type=int,
        default=None,
        help="override the compile default for every row",
    )
    goals = parser.add_argument_group("goals table (--goals)")
    goals.add_argument("--goals", action="store_true", help="measure issue #15's goals table")
    goals.add_argument("--rounds", type=int, default=3, help="consecutive runs (default 3)")
    goals.add_argument("--repeats", type=int, default=3, help="block pairs per cell (default 3)")
    goals.add_argument("--steps", type=int, default=48, help="steps per block (default 48)")
    goals.add_argument(
        "--alt-jit", action="store_true",
        help="also each aggregator all-XLA (~xla) and no-XLA + XLA solver (~solver); ~2x longer",
    )  # fmt: skip
    goals.add_argument(
        "--out", default=os.path.join(os.path.dirname(__file__), "results", "goals.md"),
        help="markdown file for the table ('' to only print it)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.jit_compile is not None:
        COMPILE_KWARGS["jit_compile"] = {"true": True, "false": False}.get(args.jit_compile, "auto")
    if args.steps_per_execution is not None:
        COMPILE_KWARGS["steps_per_execution"] = args.steps_per_execution
    if args.torch_python and not os.access(args.torch_python, os.X_OK):
        parser.error(f"--torch-python {args.torch_python}: not an executable file")
    rounds, steps = (3, 32) if args.quick else (7, 64)

    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    if args.goals:
        # speed_goals imports this module by name: let it see this instance
        # (and the COMPILE_KWARGS set above), not a second copy.
        sys.modules.setdefault("weighting_speed", sys.modules[__name__])
        import speed_goals

        table = speed_goals.run_goals(
            args.tasks, args.rounds, args.repeats, args.steps, args.threads,
            args.torch_python, args.only, args.out or None, args.alt_jit,
        )  # fmt: skip
        print(table)
        return

    # One table per T, printed as soon as it is measured.
    for t in args.tasks:
        torch = torch_timer(args.torch_python, t, args.threads, args.only)
        try:
            # Build and warm up ours only after torchjd has warmed up: the
            # two processes share the cores.
            ours, ratios, versus = time_ours(t, rounds, steps, args.only, torch)
        finally:
            if torch is not None:
                torch.close()
        print(f"\nT = {t}: Static {ours['static'] * 1e3:.2f} ms/step", end="")
        if "torch:static" in versus:
            print(f" (torchjd script, plain backward: {versus['torch:static'] * 1e3:.2f} ms)",
                  end="")  # fmt: skip
        print(f"\n\n| strategy | T={t} / Static | T={t} ours / torchjd |\n|---|---|---|")
        for label in ours:
            ratio = f"{versus[label]:.2f}" if label in versus else ""
            print(f"| {label} | {ratios[label]:.2f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
