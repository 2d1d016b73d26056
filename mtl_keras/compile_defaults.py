"""Defaults `MultiTaskModel.compile` fills in when the caller leaves
`steps_per_execution` / `jit_compile` unset.

Measured on a 2-core CPU (benchmarks/weighting_speed.py, issue #15): one
`fit` step of a small MLP is dominated by Keras's per-call dispatch and the
per-batch callback work at `steps_per_execution=1` (1.6-2.7 ms of ~5.5 ms);
running 32 steps per call removes most of it. On CPU, XLA made the plain
(one backward pass) step slower than TF's oneDNN kernels, so loss-weighting
strategies run without it there; gradient aggregators keep Keras's "auto"
(XLA when every layer supports it), since their per-step solvers are many
small ops that XLA fuses. On GPUs/TPUs Keras's "auto" is kept for all.
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
        MultiWorkerMirroredStrategy); `jit_compile` defaults to False on a
        CPU-only machine for strategies that are not gradient aggregators,
        else Keras's "auto".

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
    if "jit_compile" not in out and not eager:
        if not isinstance(weighting, GradientAggregator) and not _accelerator():
            out["jit_compile"] = False
    return out
