"""Defaults `MultiTaskModel.compile` fills in when the caller leaves
`steps_per_execution` / `jit_compile` unset.

Measured on a 2-core CPU (benchmarks/weighting_speed.py, issue #15): one
`fit` step of a small MLP is dominated by Keras's per-call dispatch and the
per-batch callback work at `steps_per_execution=1` (1.6-2.7 ms of ~5.5 ms);
running 32 steps per call removes most of it. On CPU, XLA made the plain
(one backward pass) step slower than TF's oneDNN kernels, which use both
cores where XLA's CPU code mostly uses one. So on a CPU-only machine:

- loss weightings run without XLA;
- aggregators with `rep_grad=True` (one backward pass through the trunk,
  plus a small solver) run without XLA too, but their solver is compiled
  as its own XLA cluster (`GradientAggregator.solver`): it is many small
  ops and `tf.while_loop`s that XLA fuses. For Gramian-based methods only
  the `(T, T)` solve is compiled; the Gramian and the direction stay
  oneDNN matmuls (XLA's CPU dot took ~0.5 ms for a `(3, 65,536)` Gramian,
  oneDNN ~0.02 ms).
  Per-step CPU time at T=3 (2026-12-03, load average ~2, min of 8 blocks),
  all-XLA vs no-XLA + XLA solver: cagrad@rep 2.66 vs 2.46 ms, dualproj@rep
  2.55 vs 2.32, config@rep 2.58 vs 2.38 (wall times equal within noise);
  static 1.93;
- full-Jacobian aggregators keep Keras's "auto" (XLA when every layer
  supports it): at T=8 the all-XLA step was faster (wall, min of 6 blocks:
  upgrad 6.97 vs 8.13 ms, mgda 6.31 vs 7.87, pcgrad 5.88 vs 7.11).

On GPUs/TPUs Keras's "auto" is kept for all.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

#: `steps_per_execution` used when the caller does not set one. 1 for now:
#: with more steps per call, an input-contract error is raised at the end of
#: the call and would name the call's last batch rather than the bad one, and
#: callbacks see every Nth batch. Pass `steps_per_execution=32` to `compile`
#: for the measured speed-up (benchmarks/weighting_speed.py).
DEFAULT_STEPS_PER_EXECUTION = 1


def _multi_worker() -> bool:
    # steps_per_execution > 1 fails under MultiWorkerMirroredStrategy today.
    if not tf.distribute.has_strategy():
        return False
    strategy = tf.distribute.get_strategy()
    return isinstance(
        strategy,
        (tf.distribute.MultiWorkerMirroredStrategy,
         tf.distribute.experimental.MultiWorkerMirroredStrategy),
    )  # fmt: skip


def _accelerator() -> bool:
    return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def compile_defaults(weighting: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """`kwargs` for `keras.Model.compile` with the defaults filled in.

    Args:
        weighting: the resolved `mtl_keras.weighting.Weighting`.
        kwargs: what the caller passed; explicit values are never changed.

    Returns:
        A new dict: `steps_per_execution` defaults to
        `DEFAULT_STEPS_PER_EXECUTION` (1 when `run_eagerly` or under
        MultiWorkerMirroredStrategy); `jit_compile` defaults as the module
        docstring says. Sets `weighting.jit_solver` (see `GradientAggregator.solver`).

    Example:
    >>> from mtl_keras.weighting import get
    >>> compile_defaults(get("static"), {"steps_per_execution": 4})["steps_per_execution"]
    4
    """
    from mtl_keras.weighting.base import GradientAggregator

    out = dict(kwargs)
    eager = bool(out.get("run_eagerly"))
    if "steps_per_execution" not in out and not eager and not _multi_worker():
        out["steps_per_execution"] = DEFAULT_STEPS_PER_EXECUTION
    solver = False
    if "jit_compile" not in out and not eager and not _accelerator():
        if not isinstance(weighting, GradientAggregator):
            out["jit_compile"] = False
        elif (
            weighting.rep_grad
            and not tf.distribute.has_strategy()  # state updates stay in the step
            and type(weighting).__name__ not in XLA_STEP_ON_CPU
        ):
            out["jit_compile"] = False
            solver = True
    if isinstance(weighting, GradientAggregator):
        # Set on every compile: a recompile with other arguments resets it.
        weighting.jit_solver = solver
    return out


#: aggregator class names whose `rep_grad` step should stay all-XLA on CPU
#: (none measured so: `benchmarks/weighting_speed.py --goals --alt-jit`)
XLA_STEP_ON_CPU: frozenset[str] = frozenset()
