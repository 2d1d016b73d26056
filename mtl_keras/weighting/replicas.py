"""`tf.distribute` helpers shared by the model, the Jacobian sources and the
strategies (see `mtl_keras.weighting.base` for why losses are global)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

__all__ = ["global_masked_mean", "replica_context", "replica_sum"]


def replica_context() -> Any:
    """The replica context when several replicas run in sync, else None."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync <= 1:
        return None
    return ctx


def replica_sum(value: Any) -> Any:
    """Sum of `value` over the replicas in sync (identity on one replica).

    Not differentiated through: callers use it on gradients/Jacobians or
    under `stop_gradient`.
    """
    ctx = replica_context()
    if ctx is None:
        return value
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.stop_gradient(value))


def global_masked_mean(total: Any, count: Any) -> Any:
    """`total / count` summed over the replicas, with a per-replica gradient.

    `total` is this replica's sum of masked losses and `count` its number of
    labelled elements. The value is the global-batch mean on every replica;
    the gradient is `num_replicas * d(total) / global_count`, so that after
    the strategies' division by `num_replicas` and the optimizer's sum over
    replicas the update equals the single-device one (see module docstring).
    """
    ctx = replica_context()
    if ctx is None:
        return tf.math.divide_no_nan(total, count)
    global_total, global_count = tf.unstack(
        ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.stop_gradient(tf.stack([total, count])))
    )
    local = float(ctx.num_replicas_in_sync) * tf.math.divide_no_nan(total, global_count)
    value = tf.math.divide_no_nan(global_total, global_count)
    return local + tf.stop_gradient(value - local)
