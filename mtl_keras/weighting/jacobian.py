"""Per-task gradients of the shared parameters, as one `(tasks, params)` matrix."""

from __future__ import annotations

from typing import Any

import tensorflow as tf


def flatten(tensors: list[Any]) -> Any:
    """Concatenates tensors into one float32 vector (None counts as zeros)."""
    return tf.concat([tf.reshape(tf.cast(t, tf.float32), [-1]) for t in tensors], axis=0)


def unflatten(vector: Any, like: list[Any]) -> list[Any]:
    """Splits a flat vector back into tensors shaped (and typed) like `like`."""
    sizes = [int(tf.size(v)) if not v.shape.is_fully_defined() else v.shape.num_elements()
             for v in like]
    parts = tf.split(vector, sizes)
    return [tf.cast(tf.reshape(p, v.shape), v.dtype) for p, v in zip(parts, like)]


#: how `task_jacobian` differentiates: "pfor" (one vectorised backward pass
#: over tasks, `tf.vectorized_map` under the hood) or "loop" (one backward
#: pass per task). Chosen by `benchmarks/weighting_speed.py`; "pfor" falls
#: back to "loop" when an op has no vectorisation rule.
JACOBIAN_METHOD = "pfor"


def fill_none(grads: list[Any], like: list[Any], leading: list[int] | None = None) -> list[Any]:
    """Replaces None (unconnected) gradients by float32 zeros shaped like
    `like` (with optional leading dims). Done by hand because
    `UnconnectedGradients.ZERO` chokes on Keras variables' string dtypes."""
    lead = leading or []
    return [
        tf.zeros(lead + list(v.shape), tf.float32) if g is None else g
        for g, v in zip(grads, like)
    ]


def _loop_jacobian(tape: tf.GradientTape, task_losses: Any, variables: list[Any]) -> Any:
    # Slice on the tape: a slice taken outside it is not connected.
    with tape:
        per_task = tf.unstack(task_losses, num=task_losses.shape[0])
    rows = [flatten(fill_none(tape.gradient(loss, variables), variables)) for loss in per_task]
    return tf.stack(rows, axis=0)


def _pfor_jacobian(tape: tf.GradientTape, task_losses: Any, variables: list[Any]) -> Any:
    num_tasks = task_losses.shape[0]
    blocks = tape.jacobian(task_losses, variables, experimental_use_pfor=True)
    blocks = fill_none(blocks, variables, [num_tasks])
    return tf.concat(
        [tf.reshape(tf.cast(b, tf.float32), [num_tasks, -1]) for b in blocks], axis=1
    )


def task_jacobian(
    tape: tf.GradientTape, task_losses: Any, variables: list[Any], method: str | None = None
) -> Any:
    """Jacobian of `task_losses` (num_tasks,) w.r.t. `variables` (parameters or
    tensors recorded on the tape), flattened to float32 `(num_tasks, size)`.

    `method` (default `JACOBIAN_METHOD`): "pfor" vectorises the T backward
    passes into one (`GradientTape.jacobian` with pfor: batched matmuls
    instead of T separate gradient graphs); "loop" runs one backward pass per
    task on the persistent tape (T is static, so under `tf.function`/XLA it
    unrolls into T gradient graphs sharing the forward pass). If pfor cannot
    vectorise some op, tracing falls back to the loop.
    """
    method = method or JACOBIAN_METHOD
    if method not in ("pfor", "loop"):
        raise ValueError(f"Unknown Jacobian method {method!r}; expected 'pfor' or 'loop'.")
    if task_losses.shape[0] is None:
        raise ValueError("task_jacobian needs a static number of tasks.")
    if method == "pfor":
        try:
            return _pfor_jacobian(tape, task_losses, variables)
        except (ValueError, TypeError, NotImplementedError, tf.errors.OpError):
            pass  # an op without a pfor rule: differentiate task by task
    return _loop_jacobian(tape, task_losses, variables)
