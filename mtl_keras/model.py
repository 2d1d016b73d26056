"""`MultiTaskModel`: a functional Keras model that knows its tasks."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras.src.trainers.data_adapters import data_adapter_utils
from keras.src.utils.tracking import DotNotTrackScope

from mtl_keras import contracts
from mtl_keras import weighting as weighting_lib
from mtl_keras.compile_defaults import compile_defaults
from mtl_keras.distribute import keras_fixes
from mtl_keras.distribute import shuffle as distribute_shuffle
from mtl_keras.scalar_mean import ScalarMean
from mtl_keras.tasks import Task, validate_tasks
from mtl_keras.weighting.base import (
    StepContext,
    Weighting,
    global_masked_mean,
    missing_representation,
)


def upstream_layers(tensors: list[Any], stop: frozenset = frozenset()) -> dict[int, Any]:
    """id -> operation (layer) for every operation the functional `tensors`
    depend on, their own producers included, not looking past the tensors
    whose `_history_key` is in `stop`."""
    seen: dict[int, Any] = {}
    visited_nodes: set[int] = set()
    stack = list(tensors)
    while stack:
        t = stack.pop()
        key = _history_key(t)
        if key is None or key in stop:
            continue
        op, node_index, _ = t._keras_history
        node = op._inbound_nodes[node_index]
        if id(node) in visited_nodes:
            continue
        visited_nodes.add(id(node))
        seen[id(op)] = op
        stack.extend(node.input_tensors)
    return seen


def upstream_operations(tensor: Any) -> set[int]:
    """ids of the operations (layers) a functional tensor depends on, its own included."""
    return set(upstream_layers([tensor]))


def _history_key(tensor: Any) -> tuple[int, int, int] | None:
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None
    op, node_index, tensor_index = history
    return id(op), node_index, tensor_index


class RepresentationError(ValueError):
    """The declared shared representation is not a valid cut of the model."""


def representation_tensors(
    model: keras.Model, names: list[str], outputs: dict[str, Any]
) -> list[Any]:
    """The output tensors of the layers `names` in `model`'s graph, checked
    to be a valid shared representation (see `mtl_keras.weighting.base`).

    Raises `RepresentationError` when a layer is missing or called several
    times, when one representation tensor is computed from another, or when
    a trainable layer below the representation also reaches a task output
    beside it (its rep_grad gradient would miss that path).
    """
    tensors: list[Any] = []
    rep_nodes: list[Any] = []
    nodes_of = {}
    for depth_nodes in model._nodes_by_depth.values():
        for node in depth_nodes:
            if node.operation is not None:
                nodes_of.setdefault(id(node.operation), []).append(node)
    for name in names:
        layer = next((op for op in model.operations if op.name == name), None)
        if layer is None:
            raise RepresentationError(
                f"representation layer {name!r} is not a layer of the model; layers are "
                f"{[op.name for op in model.operations]}."
            )
        nodes = nodes_of.get(id(layer), [])
        if len(nodes) != 1:
            raise RepresentationError(
                f"representation layer {name!r} is called {len(nodes)} times in the model; "
                "it must be called once."
            )
        rep_nodes.append(nodes[0])
        tensors.extend(keras.tree.flatten(nodes[0].outputs))
    keys = frozenset(_history_key(t) for t in tensors)
    for node in rep_nodes:
        below = upstream_layers(list(node.input_tensors))
        for other in rep_nodes:
            if id(other.operation) in below:
                raise RepresentationError(
                    f"representation tensor of layer {node.operation.name!r} is computed from "
                    f"the representation layer {other.operation.name!r}; list only "
                    "tensors that do not depend on each other."
                )
    below_rep = upstream_layers(tensors)
    for task, out in outputs.items():
        for op_id, op in upstream_layers([out], keys).items():
            if op_id in below_rep and getattr(op, "trainable_weights", None):
                raise RepresentationError(
                    f"layer {op.name!r} feeds the representation {names} and also reaches "
                    f"task {task!r} beside it; add its tensor that reaches {task!r} to the "
                    "representation (read it through its own layer, e.g. "
                    "mtl_keras.layers.RepresentationTap)."
                )
    return tensors


def _strings_to_tensors(data: Any) -> Any:
    """NumPy string arrays -> tf.string tensors (Keras's array adapter rejects
    unicode/object arrays, but raw categorical features are strings)."""
    import numpy as np

    def convert(value: Any) -> Any:
        if isinstance(value, np.ndarray) and value.dtype.kind in "USO":
            return tf.constant(value.astype(str) if value.dtype.kind == "O" else value)
        return value

    if isinstance(data, (dict, list, tuple, np.ndarray)):
        return keras.tree.map_structure(convert, data)
    return data


@keras.saving.register_keras_serializable(package="mtl_keras")
class MultiTaskModel(keras.Model):
    """A functional model with one named output per task.

    Build it with a builder (`mtl_keras.builders.shared_bottom(...)`) or
    directly from functional inputs and a dict of outputs keyed by task name.

    `compile(optimizer, weighting=...)` fills losses, metrics and loss weights
    from the task specs. Training computes each task's loss over the rows
    labelled for that task only (mean over labelled rows; see
    `mtl_keras.tasks` for how a missing label is marked) and lets the
    weighting strategy turn task losses into gradients. Logged per task:
    `<task>_loss`, `<task>_weight` and `<task>_<metric>`.

    Args:
        inputs: functional inputs (a tensor, list or dict).
        outputs: dict task name -> output tensor.
        tasks: the task specs, one per output.
        representation: optional name (or list of names) of the layer(s)
            whose outputs form the shared representation, a cut between the
            shared and the task-specific parameters (checked; see
            `mtl_keras.weighting.base` for the contract); needed by
            strategies with `rep_grad=True`.

    Example:
    >>> import keras
    >>> from mtl_keras import Binary, MultiTaskModel, Regression
    >>> x = keras.Input((4,))
    >>> h = keras.layers.Dense(8, activation="relu")(x)
    >>> tasks = [Binary("click"), Regression("dwell")]
    >>> model = MultiTaskModel(x, {t.name: t.head(h) for t in tasks}, tasks=tasks)
    >>> model.compile("adam", weighting="uncertainty")
    """

    def __init__(
        self,
        inputs: Any,
        outputs: Any,
        name: str | None = None,
        *,
        tasks: list[Task] | None = None,
        representation: str | list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if tasks is None:
            raise ValueError("MultiTaskModel needs `tasks` (a list of Task specs).")
        # From a saved config, tasks arrive serialized.
        tasks = [
            keras.saving.deserialize_keras_object(t) if isinstance(t, dict) else t
            for t in (tasks if isinstance(tasks, (list, tuple)) else [tasks])
        ]
        tasks = validate_tasks(tasks)
        if not isinstance(outputs, dict):
            raise ValueError(
                "MultiTaskModel `outputs` must be a dict task name -> output tensor, "
                f"got {type(outputs).__name__}."
            )
        names = [t.name for t in tasks]
        if sorted(outputs) != sorted(names):
            raise ValueError(
                f"MultiTaskModel outputs {sorted(outputs)} do not match the tasks {names}."
            )
        # Outputs in task order so that flat views line up with `tasks`.
        outputs = {n: outputs[n] for n in names}
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        self._tasks = tasks
        self.weighting: Weighting | None = None
        self._task_variable_groups = self._variable_groups()
        if isinstance(representation, (list, tuple)):
            representation = [str(n) for n in representation]
        elif representation is not None and not isinstance(representation, str):
            raise RepresentationError(
                "`representation` must be a layer name or a list of layer names, got "
                f"{representation!r}."
            )
        self.representation = representation
        self._representation_model: keras.Model | None = None
        self._representation_tensors: list[Any] = []
        if representation:
            names = [representation] if isinstance(representation, str) else representation
            self._representation_tensors = representation_tensors(self, names, outputs)

    # ------------------------------------------------------------------ tasks
    @property
    def tasks(self) -> list[Task]:
        return list(self._tasks)

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self._tasks]

    def _variable_groups(self) -> tuple[list[Any], list[list[Any]]]:
        """Splits layers into shared (used by >1 task) and task-specific."""
        upstream = [upstream_operations(self._outputs_struct[n]) for n in self.task_names]
        counts: dict[int, int] = {}
        for ids in upstream:
            for i in ids:
                counts[i] = counts.get(i, 0) + 1
        shared_ids = {i for i, c in counts.items() if c > 1}
        return shared_ids, [ids - shared_ids for ids in upstream]

    def variable_groups(self) -> tuple[list[int], list[list[int]], list[int]]:
        """Indices into `trainable_variables`: (shared, per-task, weighting's own)."""
        _, task_ids = self._task_variable_groups
        owner: dict[int, Any] = {}
        for layer in self.layers:
            for v in layer.trainable_variables:
                owner.setdefault(id(v), id(layer))
        own_ids = set()
        if self.weighting is not None:
            own_ids = {id(v) for v in self.weighting.trainable_variables}
        shared, own = [], []
        per_task: list[list[int]] = [[] for _ in self._tasks]
        for i, v in enumerate(self.trainable_variables):
            if id(v) in own_ids:
                own.append(i)
                continue
            layer_id = owner.get(id(v))
            placed = False
            for t, ids in enumerate(task_ids):
                if layer_id in ids:
                    per_task[t].append(i)
                    placed = True
                    break
            if not placed:
                shared.append(i)
        return shared, per_task, own

    # ---------------------------------------------------------------- compile
    def compile(
        self,
        optimizer: Any = "adam",
        weighting: Any = "static",
        loss: dict[str, Any] | None = None,
        metrics: dict[str, list[Any]] | None = None,
        loss_weights: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        """Configures training.

        Args:
            optimizer: a Keras optimizer or its name.
            weighting: a strategy name (see `mtl_keras.weighting.STRATEGIES`)
                or a `mtl_keras.weighting.Weighting` instance.
            loss: optional dict task name -> loss overriding the task spec.
            metrics: optional dict task name -> metrics overriding the spec.
            loss_weights: optional dict task name -> static weight overriding
                the spec's `weight`.
            on_nonfinite: "raise" (default) stops training with an error naming
                the feature/task on NaN/Inf features, task losses or gradients;
                "skip" skips such batches (counted, warned, logged as
                `nonfinite_skipped`). See `mtl_keras.contracts`.
            allow_nonfinite_features: input names that may carry NaN/Inf
                (a layer of the model imputes them).
            **kwargs: passed to `keras.Model.compile` (`jit_compile`,
                `steps_per_execution`, `run_eagerly`, ...). Keras's own
                `loss`/`metrics` machinery is not used: losses are per task.
                Unset `steps_per_execution` defaults to 32 (1 when eager or
                under MultiWorkerMirroredStrategy) and unset `jit_compile` to
                False on CPU for loss-weighting strategies
                (`mtl_keras.compile_defaults`); callbacks then see every
                32nd batch.
        """
        for key in ("weighted_metrics",):
            if kwargs.get(key):
                raise ValueError(
                    f"MultiTaskModel.compile does not take `{key}`: pass per-task "
                    "`sample_weight` to fit and metrics through `metrics`."
                )
        on_nonfinite = kwargs.pop("on_nonfinite", "raise")
        allow_nonfinite = kwargs.pop("allow_nonfinite_features", ())
        names = self.task_names
        for arg_name, arg in (("loss", loss), ("metrics", metrics), ("loss_weights", loss_weights)):
            if arg is None:
                continue
            if not isinstance(arg, dict):
                raise ValueError(
                    f"`{arg_name}` must be a dict keyed by task name ({names}), "
                    f"got {type(arg).__name__}."
                )
            unknown = set(arg) - set(names)
            if unknown:
                raise ValueError(
                    f"`{arg_name}` names unknown tasks {sorted(unknown)}; tasks are {names}."
                )
        self._effective_tasks = []
        for task in self._tasks:
            config = task.get_config()
            if loss and task.name in loss:
                config["loss"] = keras.saving.serialize_keras_object(loss[task.name])
            if metrics and task.name in metrics:
                config["metrics"] = [
                    keras.saving.serialize_keras_object(m) for m in metrics[task.name]
                ]
            if loss_weights and task.name in loss_weights:
                config["weight"] = loss_weights[task.name]
            self._effective_tasks.append(type(task).from_config(config))

        strategy = weighting_lib.get(weighting)
        if strategy.built and strategy.task_names != names:
            raise ValueError(
                f"This weighting instance was built for tasks {strategy.task_names}, "
                f"not {names}; pass a fresh instance."
            )
        if not strategy.built:
            strategy.build_for_tasks(self._effective_tasks)

        # Unset steps_per_execution / jit_compile get measured defaults; the
        # saved compile config keeps only what the caller passed.
        super().compile(optimizer=optimizer, **compile_defaults(strategy, kwargs))
        with DotNotTrackScope():
            self._loss_tracker = ScalarMean(name="loss")
        self.weighting = strategy
        self._contracts = contracts.StepGuard(self, on_nonfinite, allow_nonfinite)
        self._task_loss_fns = [t.loss_fn() for t in self._effective_tasks]
        # Not auto-tracked, so that a second compile replaces (rather than
        # adds to) the per-task metrics; exposed through `metrics`.
        with DotNotTrackScope():
            self._task_metrics = [t.build_metrics() for t in self._effective_tasks]
            self._task_loss_trackers = [ScalarMean(name=f"{n}_loss") for n in names]
            self._task_weight_trackers = [ScalarMean(name=f"{n}_weight") for n in names]
        self._mtl_compile_config = {
            "optimizer": keras.saving.serialize_keras_object(self.optimizer),
            "weighting": keras.saving.serialize_keras_object(strategy),
            "loss": None
            if loss is None
            else {k: keras.saving.serialize_keras_object(v) for k, v in loss.items()},
            "metrics": None
            if metrics is None
            else {
                k: [keras.saving.serialize_keras_object(m) for m in v] for k, v in metrics.items()
            },
            "loss_weights": loss_weights,
            "on_nonfinite": on_nonfinite,
            "allow_nonfinite_features": list(self._contracts.allowed),
            **{k: v for k, v in kwargs.items() if k in ("jit_compile", "steps_per_execution")},
        }

    @property
    def metrics(self) -> list[Any]:
        metrics = list(super().metrics)
        if getattr(self, "_task_loss_trackers", None):
            for t in range(len(self._task_loss_trackers)):
                metrics.append(self._task_loss_trackers[t])
                metrics.append(self._task_weight_trackers[t])
                metrics.extend(self._task_metrics[t])
        return metrics

    def get_compile_config(self) -> dict[str, Any]:
        if self.compiled and hasattr(self, "_mtl_compile_config"):
            return dict(self._mtl_compile_config)
        return {}

    def compile_from_config(self, config: dict[str, Any]) -> None:
        config = dict(config)
        config["optimizer"] = keras.optimizers.deserialize(config["optimizer"])
        for key in ("loss",):
            if config.get(key):
                config[key] = {
                    k: keras.saving.deserialize_keras_object(v) for k, v in config[key].items()
                }
        if config.get("metrics"):
            config["metrics"] = {
                k: [keras.saving.deserialize_keras_object(m) for m in v]
                for k, v in config["metrics"].items()
            }
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    # ------------------------------------------------------------ train/test
    def _labels_by_task(self, y: Any, what: str = "y") -> dict[str, Any]:
        names = self.task_names
        if y is None:
            raise ValueError(f"MultiTaskModel needs labels: a dict keyed by task name ({names}).")
        if isinstance(y, (list, tuple)):
            if len(y) != len(names):
                raise ValueError(
                    f"Got {len(y)} label arrays in `{what}` for {len(names)} tasks {names}; "
                    "pass a dict keyed by task name."
                )
            return dict(zip(names, y))
        if not isinstance(y, dict):
            if len(names) == 1:
                return {names[0]: y}
            raise ValueError(
                f"`{what}` must be a dict keyed by task name ({names}), got {type(y).__name__}."
            )
        unknown = set(y) - set(names)
        if unknown:
            raise ValueError(
                f"`{what}` has keys {sorted(unknown)} that are not tasks; tasks are {names}."
            )
        return y

    def _task_losses(
        self, y: Any, y_pred: Any, sample_weight: Any
    ) -> tuple[Any, list[tuple[Any, Any, Any]]]:
        """Per-task mean loss over labelled rows (or tokens), and (labels, preds, mask)."""
        labels = self._labels_by_task(y)
        weights = None
        if sample_weight is not None:
            weights = (
                self._labels_by_task(sample_weight, "sample_weight")
                if isinstance(sample_weight, (dict, list, tuple))
                else {n: sample_weight for n in self.task_names}
            )
        losses, prepared = [], []
        for task, loss_fn in zip(self._effective_tasks, self._task_loss_fns):
            pred = y_pred[task.name]
            if task.name not in labels:
                # A task absent from this data set: every row is unlabelled.
                batch = tf.shape(pred)[0]
                mask = tf.zeros([batch], tf.float32)
                y_safe = None
                losses.append(tf.constant(0.0))
                prepared.append((y_safe, pred, mask))
                continue
            y_safe, mask = task.prepare_labels(labels[task.name], pred)
            # The mask is per row (batch,) or finer, e.g. per token
            # (batch, seq_len); the loss is averaged over all its elements.
            mask_rank = mask.shape.rank
            if weights is not None and task.name in weights:
                w = tf.cast(tf.convert_to_tensor(weights[task.name]), tf.float32)
                contracts.check_weight_shape(task, w, mask)
                if w.shape.rank != mask_rank:
                    # Per-row weights broadcast over the mask's other dims.
                    w = tf.reshape(w, [-1] + [1] * (mask_rank - 1))
                mask = mask * w
            values = tf.cast(loss_fn(y_safe, tf.cast(pred, tf.float32)), tf.float32)
            while values.shape.rank > mask_rank:
                values = tf.reduce_mean(values, axis=-1)
            # Mean over labelled elements: masked ones neither add loss nor count.
            denom = tf.reduce_sum(mask)
            loss = global_masked_mean(tf.reduce_sum(values * mask), denom)
            losses.append(loss)
            prepared.append((y_safe, pred, mask))
        return tf.stack(losses), prepared

    def _update_metrics(self, task_losses: Any, weights: Any, prepared: list, total: Any) -> dict:
        self._loss_tracker.update_state(total)
        for t, (y_safe, pred, mask) in enumerate(prepared):
            labelled = tf.reduce_sum(mask)
            # A batch without labels for a task says nothing about its loss.
            self._task_loss_trackers[t].update_state(
                task_losses[t], sample_weight=tf.minimum(labelled, 1.0)
            )
            self._task_weight_trackers[t].update_state(weights[t])
            if y_safe is None:
                continue
            for metric in self._task_metrics[t]:
                metric.update_state(y_safe, pred, sample_weight=mask)
        return self.get_metrics_result()

    def _regularization_loss(self) -> Any:
        if not self.losses:
            return None
        return tf.add_n([tf.cast(loss, tf.float32) for loss in self.losses])

    def train_step(self, data: Any) -> dict[str, Any]:
        x, y, sample_weight = data_adapter_utils.unpack_x_y_sample_weight(data)
        strategy = self.weighting
        with tf.GradientTape(persistent=strategy.needs_persistent_tape) as tape:
            representation = None
            if strategy.needs_representation or (
                strategy.uses_representation and self._representation_tensors
            ):
                y_pred, representation = self._call_with_representation(x)
            else:
                y_pred = self(x, training=True)
            task_losses, prepared = self._task_losses(y, y_pred, sample_weight)
            regularization = self._regularization_loss()
        variables = self.trainable_variables
        shared, per_task, own = self._groups_cache()
        ctx = StepContext(
            tape=tape,
            task_losses=task_losses,
            regularization_loss=regularization,
            variables=variables,
            shared=shared,
            task_specific=per_task,
            own=own,
            scale_loss=self.optimizer.scale_loss,
            num_replicas=tf.distribute.get_strategy().num_replicas_in_sync,
            representation=representation,
        )
        grads, weights = strategy.compute_gradients(ctx)
        del tape
        # Invalid labels / non-finite values: the update is not applied (and
        # the ContractGuard callback raises or counts the skip).
        ok = self._contracts.train_checks(self, x, y, task_losses, grads, (shared, per_task, own))
        contracts.apply_if(ok, self.optimizer, grads, variables)
        total = tf.reduce_sum(weights * task_losses)
        # A skipped batch is left out of the logs too.
        return contracts.if_applied(
            ok, lambda: self._update_metrics(task_losses, weights, prepared, total), self
        )

    def _call_with_representation(self, x: Any) -> tuple[dict[str, Any], list[Any]]:
        """Forward pass that also returns the representation's tensors.

        Runs an internal functional model over the same layers with one more
        outputs, so the representation's tensors are recorded on the tape.
        """
        if not self._representation_tensors:
            raise missing_representation(f"Weighting {type(self.weighting).__name__}")
        reps = self._representation_tensors
        if self._representation_model is None:
            outputs = [self._outputs_struct[n] for n in self.task_names] + reps
            # Untracked: it shares this model's layers, not a sub-model.
            with DotNotTrackScope():
                self._representation_model = keras.Model(self._inputs_struct, outputs)
        outs = self._representation_model(x, training=True)
        num_tasks = len(self.task_names)
        return dict(zip(self.task_names, outs[:num_tasks])), list(outs[num_tasks:])

    def _groups_cache(self) -> tuple[list[int], list[list[int]], list[int]]:
        # Python-side, computed once per trace.
        return self.variable_groups()

    def test_step(self, data: Any) -> dict[str, Any]:
        x, y, sample_weight = data_adapter_utils.unpack_x_y_sample_weight(data)
        y_pred = self(x, training=False)
        task_losses, prepared = self._task_losses(y, y_pred, sample_weight)
        self._contracts.test_checks(self, y)
        _, weights = self.weighting.combine(task_losses, training=False)
        total = tf.reduce_sum(weights * task_losses)
        return self._update_metrics(task_losses, weights, prepared, total)

    # ------------------------------------- input contracts (mtl_keras.contracts)
    def fit(self, *args: Any, **kwargs: Any) -> Any:
        call = contracts.prepare_fit(self, args, kwargs)
        # Under MultiWorkerMirroredStrategy every worker must draw the same order.
        x, y, _, call = distribute_shuffle.seeded_arrays(
            self, call.pop("x", None), call.pop("y", None), (), call
        )
        return super().fit(x, y, **call)

    def evaluate(self, *args: Any, **kwargs: Any) -> Any:
        return super().evaluate(**contracts.prepare_evaluate(self, args, kwargs))

    def predict(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        return super().predict(contracts.prepare_predict(self, x), *args, **kwargs)

    def train_on_batch(self, x: Any, y: Any = None, sample_weight: Any = None, **kw: Any) -> Any:
        method = super().train_on_batch
        return contracts.run_on_batch(self, method, "train", x, y, sample_weight, kw)

    def test_on_batch(self, x: Any, y: Any = None, sample_weight: Any = None, **kw: Any) -> Any:
        method = super().test_on_batch
        return contracts.run_on_batch(self, method, "test", x, y, sample_weight, kw)

    def predict_on_batch(self, x: Any) -> Any:
        return super().predict_on_batch(contracts.prepare_predict(self, x))

    # ------------------------- MultiWorkerMirroredStrategy (keras-team/keras#20585)
    def _maybe_symbolic_build(self, iterator: Any = None, data_batch: Any = None) -> None:
        # Keras reduces the nested PerReplica batch across workers and fails;
        # build from the input spec (or a local batch) instead (see keras_fixes).
        if not keras_fixes.symbolic_build(self, iterator, data_batch):
            super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def _make_function(self, step_function: Any) -> Any:
        # Keras reduces scalar logs with axis=0 across workers and fails; one
        # packed all-reduce of the logs instead (see keras_fixes).
        function = keras_fixes.step_function(self, step_function)
        return function or super()._make_function(step_function)

    # ----------------------------------------------------------- serialization
    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["tasks"] = [keras.saving.serialize_keras_object(t) for t in self._tasks]
        config["representation"] = self.representation
        return config
