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


def task_jacobian(tape: tf.GradientTape, task_losses: Any, variables: list[Any]) -> Any:
    """Jacobian of `task_losses` (num_tasks,) w.r.t. `variables`, flattened to
    float32 `(num_tasks, num_params)`.

    One backward pass per task on a persistent tape. The number of tasks is
    static, so under `tf.function`/XLA this unrolls into T gradient graphs
    that share the forward pass.
    """
    rows = []
    num_tasks = task_losses.shape[0]
    for t in range(num_tasks):
        grads = tape.gradient(
            task_losses[t], variables, unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        rows.append(flatten(grads))
    return tf.stack(rows, axis=0)
