"""Issue #15's step-speed goals, measured side by side in one run
(`python benchmarks/weighting_speed.py --goals`).

Three comparisons, each a paired ratio of two blocks of steps timed back to
back (their order alternating), so that load from other processes hits both
sides alike:

- plain step: our `Static` `MultiTaskModel` step vs the same MLP's plain
  PyTorch step (goal <= 1.0);
- every gradient aggregator in full-Jacobian mode vs torchjd's same
  aggregator (`mtl_backward` + `jac_to_grad`) (goal <= 1.0);
- every aggregator with `rep_grad=True` vs our `Static` step (goal <= 1.3).

Every comparison is measured at every T in every round; a round is one
"run" of the goals and the rounds are consecutive, so "three consecutive
runs" is `--rounds 3`. Within a round a ratio is the median over `repeats`
pairs of blocks. Models are compiled as users compile them (no
`jit_compile` / `steps_per_execution` argument, i.e.
`mtl_keras.compile_defaults`), unless `--jit-compile` /
`--steps-per-execution` override them.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

#: goal per comparison kind (ours / theirs must be at most this)
GOALS = {"plain": 1.0, "torchjd": 1.0, "rep": 1.3}


@dataclass
class Row:
    """One comparison: `ours` / `theirs`, one median ratio per round."""

    label: str
    kind: str  # "plain", "torchjd" or "rep"
    ratios: list[float] = field(default_factory=list)
    ours_ms: list[float] = field(default_factory=list)
    theirs_ms: list[float] = field(default_factory=list)

    @property
    def goal(self) -> float:
        return GOALS[self.kind]

    def met(self) -> bool:
        return bool(self.ratios) and all(r <= self.goal for r in self.ratios)


def paired_ratio(ours: Any, theirs: Any, repeats: int) -> tuple[float, float, float]:
    """Median over `repeats` pairs of `ours()` / `theirs()` (each returns
    seconds per step), alternating which goes first; also both medians.

    Example:
    >>> paired_ratio(lambda: 2.0, lambda: 4.0, 3)
    (0.5, 2.0, 4.0)
    """
    pairs = []
    for k in range(repeats):
        if k % 2 == 0:
            a, b = ours(), theirs()
        else:
            b, a = theirs(), ours()
        pairs.append((a, b))
    ratio = statistics.median(a / b for a, b in pairs)
    return (
        ratio,
        statistics.median(a for a, _ in pairs),
        statistics.median(b for _, b in pairs),
    )


def markdown(rows_by_t: dict[int, list[Row]], header: list[str]) -> str:
    """The goals table: one section per T, one column per round.

    Example:
    >>> row = Row("pcgrad vs torchjd", "torchjd", [0.8, 0.9, 1.1])
    >>> print(markdown({3: [row]}, []).splitlines()[-1])
    | pcgrad vs torchjd | <= 1.0 | 0.80 | 0.90 | **1.10** | no |
    """
    rounds = max((len(r.ratios) for rows in rows_by_t.values() for r in rows), default=0)
    lines = list(header)
    for t, rows in rows_by_t.items():
        cols = " | ".join(f"run {i + 1}" for i in range(rounds))
        lines += ["", f"### T = {t}", "", f"| comparison | goal | {cols} | met in all |"]
        lines.append("|---|---|" + "---|" * rounds + "---|")
        for row in rows:
            cells = [f"{r:.2f}" if r <= row.goal else f"**{r:.2f}**" for r in row.ratios] + [""] * (
                rounds - len(row.ratios)
            )
            verdict = "yes" if row.met() else "no"
            lines.append(
                f"| {row.label} | <= {row.goal} | " + " | ".join(cells) + f" | {verdict} |"
            )
    return "\n".join(lines) + "\n"


def _block_timer(run: tuple[Any, Any], steps: int) -> Any:
    import time as _time

    model, it = run

    def block() -> float:
        # One train_function call runs steps_per_execution steps, as in fit.
        per_call = int(model.steps_per_execution)
        calls = max(1, round(steps / per_call))
        start = _time.perf_counter()
        for _ in range(calls):
            logs = model.train_function(it)
        float(logs["loss"])  # wait for the last step
        return (_time.perf_counter() - start) / (calls * per_call)

    return block


#: `--alt-jit` variants: label suffix -> (compile kwargs, jit_solver)
ALT_JIT = {"~xla": ({"jit_compile": True}, False), "~solver": ({"jit_compile": False}, True)}


def _prepare(
    num_tasks: int, aggregators: list[str], alt_jit: bool = False
) -> dict[str, tuple[Any, Any]]:
    """Built, traced and warmed-up models: static, each aggregator, each @rep
    (and with `alt_jit` each of those also all-XLA and no-XLA + XLA solver)."""
    import numpy as np
    import tensorflow as tf
    import weighting_speed as ws

    from mtl_keras import weighting

    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 64)).astype("float32")
    y = {f"t{i}": rng.normal(size=(256,)).astype("float32") for i in range(num_tasks)}
    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    factories: dict[str, Any] = {"static": weighting.Static}
    for name in aggregators:
        factories[name] = weighting.STRATEGIES[name]
        factories[f"{name}@rep"] = lambda n=name: weighting.STRATEGIES[n](rep_grad=True)
    variants = {label: ({}, None) for label in factories}
    if alt_jit:
        for label in list(factories)[1:]:
            for suffix, setting in ALT_JIT.items():
                variants[label + suffix] = setting
    runs = {}
    for label, (kwargs, solver) in variants.items():
        factory = factories[label.split("~")[0]]
        saved = dict(ws.COMPILE_KWARGS)
        ws.COMPILE_KWARGS.update(kwargs)
        try:
            model = ws._build(num_tasks, factory())
        finally:
            ws.COMPILE_KWARGS.clear()
            ws.COMPILE_KWARGS.update(saved)
        if solver is not None:
            model.weighting.jit_solver = solver
        model.make_train_function()
        it = iter(data)
        for _ in range(3):  # trace, compile, warm up
            model.train_function(it)
        runs[label] = (model, it)
    return runs


def run_goals(
    tasks: list[int],
    rounds: int,
    repeats: int,
    steps: int,
    threads: int | None,
    torch_python: str | None,
    only: list[str] | None,
    out: str | None,
    alt_jit: bool = False,
) -> str:
    """Measures every goal comparison; returns (and writes to `out`) the table."""
    import numpy as np
    import weighting_speed as ws

    aggregators = [n for n in ws.AGGREGATORS if not only or n in only]
    started = time.perf_counter()
    load_before = os.getloadavg()
    timers: dict[int, Any] = {}
    runs: dict[int, dict[str, Any]] = {}
    rows: dict[int, list[Row]] = {}
    try:
        for t in tasks:
            # torchjd warms up before ours is built: the processes share cores.
            timers[t] = ws.torch_timer(torch_python, t, threads, aggregators)
            runs[t] = _prepare(t, aggregators, alt_jit)
            suffixes = ["", *ALT_JIT] if alt_jit else [""]
            rows[t] = [Row("plain step vs PyTorch", "plain")]
            for suffix in suffixes:
                for name in aggregators:
                    rows[t].append(Row(f"{name}{suffix} vs torchjd", "torchjd"))
            for suffix in suffixes:
                for name in aggregators:
                    rows[t].append(Row(f"{name}@rep{suffix} vs Static", "rep"))
        # The first call of each model after the others were built is slow
        # (~150 ms, measured: once per model): one untimed block each first.
        for t in tasks:
            for run in runs[t].values():
                _block_timer(run, steps)()
        shuffler = np.random.default_rng(1)
        for _ in range(rounds):
            for t in tasks:
                torch, ours = timers[t], runs[t]
                static = _block_timer(ours["static"], steps)
                order = list(rows[t])
                shuffler.shuffle(order)
                for row in order:
                    name = row.label.split(" ")[0]
                    if row.kind == "plain" or row.kind == "torchjd":
                        theirs_name = "static" if row.kind == "plain" else name.split("~")[0]
                        if torch is None or theirs_name not in torch.names:
                            continue

                        def theirs(n: str = theirs_name, timer: Any = torch) -> float:
                            return timer.block(n, steps)

                        mine = static if row.kind == "plain" else _block_timer(ours[name], steps)
                        ratio, a, b = paired_ratio(mine, theirs, repeats)
                    else:
                        ratio, a, b = paired_ratio(_block_timer(ours[name], steps), static, repeats)
                    row.ratios.append(ratio)
                    row.ours_ms.append(a * 1e3)
                    row.theirs_ms.append(b * 1e3)
                print(f"round done (T={t}, {time.perf_counter() - started:.0f} s)", flush=True)
    finally:
        for timer in timers.values():
            if timer is not None:
                timer.close()
    missing = [r.label for rs in rows.values() for r in rs if not r.ratios and r.kind != "rep"]
    threading = f"{threads} threads per framework" if threads else "default threads (both)"
    header = [
        "# Step-speed goals (issue #15)",
        "",
        f"Measured {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC on "
        f"{platform.machine()} with {os.cpu_count()} cores, {threading}, "
        f"load average {load_before[0]:.1f} before and {os.getloadavg()[0]:.1f} after; "
        f"{time.perf_counter() - started:.0f} s in all.",
        "",
        f"Command: `python {' '.join(sys.argv)}`. Each cell is one run's median over "
        f"{repeats} back-to-back pairs of {steps}-step blocks of ours / theirs (bold: goal "
        "missed). Same MLP (64 -> 3 x 256 ReLU -> T linear heads), batch 256, SGD; ours "
        "compiled with the library's defaults"
        + (
            "; `~xla` rows: all-XLA step, `~solver` rows: step without XLA and the solver as "
            "its own XLA cluster (`--alt-jit`, to choose `mtl_keras.compile_defaults`)."
            if alt_jit
            else "."
        ),
    ]
    if missing:
        header += ["", "Not measured (torch/torchjd or its solver extras missing): "
                   + ", ".join(sorted(set(missing))) + "."]  # fmt: skip
    table = markdown(rows, header)
    for t, rs in rows.items():
        static = [r for r in rs if r.kind == "plain" and r.ours_ms]
        if static:
            table += (
                f"\nT = {t}: plain step ours {statistics.median(static[0].ours_ms):.2f} ms, "
                f"PyTorch {statistics.median(static[0].theirs_ms):.2f} ms (medians).\n"
            )
    if out:
        os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
        with open(out, "w") as f:
            f.write(table)
    return table
