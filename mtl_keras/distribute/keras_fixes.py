"""`MultiTaskModel` under MultiWorkerMirroredStrategy in Keras 3 (keras-team/keras#20585).

Keras 3's TensorFlow trainer (`keras/src/backend/tensorflow/trainer.py`) has
two bugs that make `fit`/`evaluate` fail as soon as the strategy spans
several workers (tensorflow/tensorflow#72388):

(a) `_maybe_symbolic_build` builds the model from
    `strategy.reduce("MEAN", <nested (x, y, sample_weight) of PerReplica>,
    axis=None)`; the collective ops cannot convert a tuple of PerReplica
    values ("Attempt to convert a value (PerReplica...) to a Tensor").
    Only shapes and dtypes matter for the build, so `symbolic_build` builds
    from the input's element spec (no batch drawn, so a reshuffling dataset's
    first epoch is the one a single process sees), or from this worker's
    first local replica's batch when the spec is not plain tensors.
(b) `reduce_per_replica` reduces every log with `strategy.reduce("MEAN", v,
    axis=0)`, but logs are scalars ("Invalid reduction dimension 0 for input
    with 0 dimensions"), and it issues one collective per log value.
    `step_function` replaces `TensorFlowTrainer._make_function` under
    MWMS: the logs of a step are packed into one float32 vector and
    averaged across replicas by one all-reduce (`axis=None`), then unpacked.
    Logs that `metric_sync.global_logs` already computed from the summed
    metric states (`GlobalLogs`, equal on every replica) skip it.

`MultiTaskModel` overrides `_maybe_symbolic_build` and `_make_function` to
call these only under MWMS; everything else is Keras's own code. The private
internals they rely on are listed in `KERAS_INTERNALS` and checked by
`check_keras_internals` (a test fails when a Keras upgrade changes them:
then re-check whether the workaround is still needed).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import keras
import tensorflow as tf

from mtl_keras.distribute import metric_sync
from mtl_keras.distribute.cluster import is_multi_worker

UPSTREAM_ISSUE = "keras-team/keras#20585"

#: (object path, source fragment it must still contain) for the Keras
#: internals the workaround replaces or calls.
KERAS_INTERNALS: list[tuple[str, str]] = [
    (
        "TensorFlowTrainer._maybe_symbolic_build",
        'self.distribute_strategy.reduce(\n                        "MEAN"',
    ),
    ("TensorFlowTrainer._make_function", "reduce_per_replica("),
    ("TensorFlowTrainer._autoconvert_optionals", "tf.experimental.Optional"),
    ("Trainer._symbolic_build", "def _symbolic_build(self, iterator=None, data_batch=None)"),
    ("reduce_per_replica", 'strategy.reduce("MEAN", v, axis=0)'),
]


def _trainer_module() -> Any:
    from keras.src.backend.tensorflow import trainer

    return trainer


def check_keras_internals() -> list[str]:
    """Problems found in the Keras internals the workaround depends on (empty: none).

    Example:
    >>> check_keras_internals()
    []
    """
    from keras.src.trainers import trainer as base_trainer

    module = _trainer_module()
    scope = {
        "TensorFlowTrainer": module.TensorFlowTrainer,
        "Trainer": base_trainer.Trainer,
        "reduce_per_replica": module.reduce_per_replica,
    }
    problems = []
    for path, fragment in KERAS_INTERNALS:
        head, _, attr = path.partition(".")
        obj = scope[head]
        if attr:
            obj = getattr(obj, attr, None)
        if obj is None:
            problems.append(f"keras {keras.__version__}: {path} no longer exists")
            continue
        if fragment not in inspect.getsource(obj):
            problems.append(
                f"keras {keras.__version__}: {path} changed (no longer contains {fragment!r}); "
                f"re-check {UPSTREAM_ISSUE} and mtl_keras.distribute.keras_fixes"
            )
    return problems


def check_steps_per_execution(model: keras.Model) -> None:
    """Refuses `steps_per_execution > 1` under MWMS: Keras's multi-step loop
    fails there ("You must feed a value for placeholder tensor ... while/body")."""
    if model.steps_per_execution > 1:
        raise ValueError(
            f"{type(model).__name__} {model.name!r}: steps_per_execution="
            f"{model.steps_per_execution} is not supported under "
            "MultiWorkerMirroredStrategy (Keras's multi-step loop fails there, even for "
            "plain Keras models); compile with steps_per_execution=1."
        )


def local_batch(strategy: tf.distribute.Strategy, batch: Any) -> Any:
    """This worker's first local replica's part of a distributed batch."""

    def first(value: Any) -> Any:
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    return tf.nest.map_structure(first, batch)


def _batch_spec(iterator: Any) -> Any:
    """The input's `TensorSpec`s (shapes and dtypes are all the build needs):
    no batch is drawn, so a reshuffling dataset's first epoch stays the
    same as on one device. None when the spec is not plain tensors."""
    adapter = getattr(iterator, "data_adapter", None)
    if adapter is None:
        return None
    spec = adapter.get_tf_dataset().element_spec
    leaves = tf.nest.flatten(spec)
    if not leaves or not all(isinstance(s, tf.TensorSpec) for s in leaves):
        return None
    return spec


def symbolic_build(model: keras.Model, iterator: Any = None, data_batch: Any = None) -> bool:
    """Builds `model` like `_maybe_symbolic_build` does, but from a local
    batch (bug (a)). Returns False when the strategy is not multi-worker
    (the caller then uses Keras's own code)."""
    strategy = model._distribute_strategy
    if strategy is None or not is_multi_worker(strategy):
        return False
    check_steps_per_execution(model)
    if iterator is not None:
        data_batch = _batch_spec(iterator)
        if data_batch is None:
            for _, _, it in iterator:
                data_batch = local_batch(strategy, next(it))
                break
    with strategy.scope():
        model._symbolic_build(data_batch=data_batch)
    return True


def _pack(logs: dict[str, Any]) -> tuple[Any, list[tuple[str, Any, Any]]]:
    """Logs -> one float32 vector and the (key, shape, dtype) to unpack it."""
    specs, parts = [], []
    for key, value in logs.items():
        value = tf.convert_to_tensor(value)
        if not value.shape.is_fully_defined():
            raise ValueError(
                f"Log {key!r} has the shape {value.shape}; under MultiWorkerMirroredStrategy "
                "logs must have a static shape (they are packed into one all-reduce)."
            )
        specs.append((key, value.shape, value.dtype))
        parts.append(tf.reshape(tf.cast(value, tf.float32), [-1]))
    if not parts:
        return tf.zeros([0], tf.float32), specs
    return tf.concat(parts, axis=0), specs


def _unpack(packed: Any, specs: list[tuple[str, Any, Any]]) -> dict[str, Any]:
    logs, offset = {}, 0
    for key, shape, dtype in specs:
        size = shape.num_elements()
        logs[key] = tf.cast(tf.reshape(packed[offset : offset + size], shape), dtype)
        offset += size
    return logs


def step_function(model: keras.Model, step: Callable[[Any], dict[str, Any]]) -> Callable | None:
    """Keras's `_make_function(step)` for MWMS with the logs reduced in one
    all-reduce (bug (b)); None when the strategy is not multi-worker.

    Args:
        model: the model whose `train_step`/`test_step` is `step`.
        step: the per-replica step returning a dict of logs.
    """
    strategy = model.distribute_strategy
    if not is_multi_worker(strategy):
        return None
    check_steps_per_execution(model)
    specs: list[tuple[str, Any, Any]] = []

    def replica_step(data: Any) -> Any:
        logs = step(data)
        if not isinstance(logs, dict):
            raise ValueError(
                f"{type(model).__name__}: a step must return a dict of logs under "
                f"MultiWorkerMirroredStrategy, got {type(logs).__name__}."
            )
        packed, found = _pack(logs)
        specs[:] = found
        if isinstance(logs, metric_sync.GlobalLogs):
            # Already computed from the summed metric states: equal everywhere.
            return packed
        # One collective for all logs (Keras issues one per value).
        ctx = tf.distribute.get_replica_context()
        return ctx.all_reduce(tf.distribute.ReduceOp.MEAN, packed)

    @tf.autograph.experimental.do_not_convert
    def one_step_on_data(data: Any) -> dict[str, Any]:
        packed = strategy.run(replica_step, args=(data,))
        # Identical on every replica after the all-reduce.
        packed = strategy.experimental_local_results(packed)[0]
        return _unpack(packed, specs)

    if not model.run_eagerly:
        one_step_on_data = tf.function(
            one_step_on_data, reduce_retracing=True, jit_compile=model.jit_compile
        )
    one_step_on_data = model._autoconvert_optionals(one_step_on_data)

    @tf.autograph.experimental.do_not_convert
    def one_step_on_iterator(iterator: Any) -> dict[str, Any]:
        return one_step_on_data(iterator.get_next())

    if not model.run_eagerly:
        one_step_on_iterator = tf.function(one_step_on_iterator, reduce_retracing=True)

    def function(iterator: Any) -> dict[str, Any]:
        if isinstance(iterator, (tf.data.Iterator, tf.distribute.DistributedIterator)):
            return one_step_on_iterator(iterator)
        outputs = None
        for data in iterator:
            outputs = one_step_on_data(data)
        return outputs

    return function
