"""Step logs computed from the metrics' *global* state under tf.distribute.

A Keras metric keeps its state in sync-on-read variables (`aggregation=SUM`):
each replica updates its own copy, and a read in cross-replica context sums
them. A step's logs, though, are `metric.result()` in the replica context,
i.e. computed from this replica's rows only; Keras then averages those
per-replica results. That is right for a mean over equal shards, and wrong
for everything else: AUC, accuracy or RMSE over unevenly labelled shards,
or any ratio. `evaluate` returns the last step's logs (its keys differ from
the training metrics' when the task-weight trackers are left out), so its
AUC and accuracy disagreed with one process (issue #14).

`global_logs` sums the metric variables across replicas (one packed
all-reduce per dtype and aggregation) and recomputes the logs from those
sums, in the replica context: every replica then logs what one process
would log, and the average of equal values is that value.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import keras
import tensorflow as tf

from mtl_keras.distribute.cluster import is_multi_worker

#: name scope of the metric-state all-reduce
NAME_SCOPE = "metric_states"
_OPS = {"sum": tf.distribute.ReduceOp.SUM, "mean": tf.distribute.ReduceOp.MEAN}


def _metric_variables(model: keras.Model) -> list[Any]:
    seen, variables = set(), []
    for metric in model.metrics:
        for variable in metric.variables:
            if id(variable) not in seen:
                seen.add(id(variable))
                variables.append(variable)
    return variables


@contextlib.contextmanager
def global_state(model: keras.Model) -> Iterator[None]:
    """Inside: `model`'s metric variables read as their sum over replicas.

    A no-op outside a replica context or with a single replica. Variables
    whose aggregation is not SUM or MEAN (e.g. "only_first_replica") keep
    their local value.

    Example:
    >>> _ = model.evaluate(x, y, verbose=0)
    >>> with global_state(model):  # one replica: unchanged
    ...     logs = model.get_metrics_result()
    >>> logs == model.get_metrics_result()
    True
    """
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync <= 1:
        yield
        return
    groups: dict[tuple[str, Any], list[Any]] = {}
    for variable in _metric_variables(model):
        if variable.aggregation in _OPS:
            groups.setdefault((variable.aggregation, variable.dtype), []).append(variable)
    if not groups:
        yield
        return
    keys = list(groups)
    packed = [tf.concat([tf.reshape(v.value, [-1]) for v in groups[k]], axis=0) for k in keys]
    # One collective per (aggregation, dtype) group, batched in one call.
    reduced: list[Any] = []
    for op in sorted({k[0] for k in keys}):  # the same order on every worker
        idx = [i for i, k in enumerate(keys) if k[0] == op]
        with tf.name_scope(NAME_SCOPE):  # benchmarks/multi_worker.py counts these bytes
            values = ctx.all_reduce(_OPS[op], [packed[i] for i in idx])
        reduced += list(zip(idx, values))
    reduced_by_key = {keys[i]: value for i, value in reduced}
    mapping = []
    for key in keys:
        offset = 0
        for variable in groups[key]:
            size = int(tf.TensorShape(variable.shape).num_elements())
            value = reduced_by_key[key][offset : offset + size]
            mapping.append((variable, tf.reshape(value, variable.shape)))
            offset += size
    with keras.StatelessScope(state_mapping=mapping):
        yield


class GlobalLogs(dict):
    """Step logs that are already equal on every replica (no further reduction needed)."""


def global_logs(model: keras.Model, logs: Any) -> Any:
    """`logs` with every metric's entry recomputed from the global state.

    Args:
        model: the model whose `train_step`/`test_step` returned `logs`.
        logs: the step's logs; keys that are not metric results are kept.

    Example:
    >>> _ = model.evaluate(x, y, verbose=0)
    >>> logs = model.get_metrics_result()
    >>> global_logs(model, logs) == logs  # one replica: the same
    True
    """
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync <= 1 or not isinstance(logs, dict):
        return logs
    with global_state(model):
        results = model.get_metrics_result()
    merged = {key: results.get(key, value) for key, value in logs.items()}
    # Every log is a global result: the MWMS step (keras_fixes.step_function)
    # skips its log all-reduce. Only there: Keras's own reduction (other
    # strategies) treats a dict subclass as one leaf.
    if set(logs) <= set(results) and is_multi_worker(tf.distribute.get_strategy()):
        return GlobalLogs(merged)
    return merged
