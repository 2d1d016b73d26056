"""`MultiTaskModel`: a functional Keras model that knows its tasks."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from mtl_keras import contracts, graph
from mtl_keras import representation as rep_lib
from mtl_keras import weighting as weighting_lib
from mtl_keras.compile_defaults import compile_defaults
from mtl_keras.distribute import keras_fixes
from mtl_keras.distribute import shuffle as distribute_shuffle
from mtl_keras.layers._frozen import keep_frozen
from mtl_keras.representation import RepresentationError
from mtl_keras.scalar_mean import ScalarMean
from mtl_keras.tasks import Task, validate_tasks
from mtl_keras.weighting.base import GradientAggregator, StepContext, Weighting
from mtl_keras.weighting.replicas import global_masked_mean, replica_sum

__all__ = ["MultiTaskModel", "RepresentationError"]


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


class _WeightingEpochEnd(keras.callbacks.Callback):
    """Drives `Weighting.on_epoch_end` from `fit` (DWA's epoch boundary)."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.model.weighting is not None:
            self.model.weighting.on_epoch_end(epoch, logs)


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
    `<task>_loss`, `<task>_<metric>` and, in training only, `<task>_weight`.
    A task with no labelled row in a logging period (a batch, an epoch, a
    whole `evaluate`) logs NaN for its loss and metrics: "no data", not
    0.0 ("perfect"); Keras's `History`, progress bar and callbacks see NaN
    and `EarlyStopping`/`ModelCheckpoint` skip it as no improvement.
    `loss` is the strategy's weighted sum of the task losses; for gradient
    aggregators, which follow a direction rather than a scalar objective,
    it is the plain sum of the task losses in both training and validation.

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
        for layer in self.layers:
            # A frozen layer rebuilt from its config (a `.keras` reload) only
            # records `trainable=False`: sublayers it creates would train
            # again. Any layer, the library's or the user's, stays frozen.
            keep_frozen(layer)
        self._tasks = tasks
        self.weighting: Weighting | None = None
        self._task_variable_groups = self._variable_groups()
        rep_names = rep_lib.layer_names(representation)
        if isinstance(representation, (list, tuple)):
            representation = rep_names
        self.representation = representation
        self._representation_model: keras.Model | None = None
        self._representation_tensors: list[Any] = []
        if rep_names:
            cut = rep_lib.find_cut(self, rep_names, outputs)
            self._representation_tensors = cut.raise_if_invalid()

    # ------------------------------------------------------------------ tasks
    @property
    def tasks(self) -> list[Task]:
        return list(self._tasks)

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self._tasks]

    def _variable_groups(self) -> tuple[list[Any], list[list[Any]]]:
        """Splits layers into shared (used by >1 task) and task-specific."""
        upstream = [graph.upstream_operations(self.output[n]) for n in self.task_names]
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
        priors = [float(t.weight) for t in self._effective_tasks]
        if not strategy.applies_priors and any(p != 1.0 for p in priors):
            weighted = {t.name: t.weight for t in self._effective_tasks if t.weight != 1.0}
            raise ValueError(
                f"Weighting {type(strategy).__name__} does not apply static task weights, "
                f"but tasks have weights {weighted} (task spec `weight` or "
                "`compile(loss_weights=...)`); drop them or use a strategy that applies "
                "them (static, uncertainty, dwa, rlw, imtl_l)."
            )
        if strategy.built and strategy.task_names != names:
            raise ValueError(
                f"This weighting instance was built for tasks {strategy.task_names}, "
                f"not {names}; pass a fresh instance."
            )
        if not strategy.built:
            strategy.build_for_tasks(self._effective_tasks)
        strategy.jacobian_source = strategy.select_source(bool(self._representation_tensors))

        # Unset steps_per_execution / jit_compile get measured defaults; the
        # saved compile config keeps only what the caller passed.
        super().compile(optimizer=optimizer, **compile_defaults(strategy, kwargs))
        with graph.untracked():
            self._loss_tracker = ScalarMean(name="loss")
        old = getattr(self, "weighting", None)
        if old is not None and old is not strategy:
            # Recompiling: the old strategy's variables must leave the model
            # (optimizer slots, `.keras` files).
            graph.untrack(self, old)
        self.weighting = strategy
        self._contracts = contracts.StepGuard(self, on_nonfinite, allow_nonfinite)
        self._priors = tf.constant(priors, tf.float32)
        # Not auto-tracked, so that a second compile replaces (rather than
        # adds to) the per-task metrics; exposed through `metrics`.
        with graph.untracked():
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
        if getattr(self, "_task_loss_trackers", None) is not None:
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

    def task_losses(self, y: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        """The float32 `(num_tasks,)` losses training optimises: per task, the
        mean over its labelled rows (or tokens) of `y`, for predictions
        `y_pred` (a dict keyed by task name).

        Example:
        >>> losses = model.task_losses(y, model(x))
        >>> tuple(losses.shape) == (len(model.tasks),)
        True
        """
        return self._task_losses(y, y_pred, sample_weight)[0]

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
        for task in self._effective_tasks:
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
            values = task.per_sample_loss(y_safe, pred)
            # Mean over labelled elements: masked ones neither add loss nor count.
            denom = tf.reduce_sum(mask)
            loss = global_masked_mean(tf.reduce_sum(values * mask), denom)
            losses.append(loss)
            prepared.append((y_safe, pred, mask))
        return tf.stack(losses), prepared

    @staticmethod
    def labelled_counts(prepared: list[tuple[Any, Any, Any]]) -> Any:
        """Labelled rows (or tokens) per task in the global batch, float32 (num_tasks,)."""
        counts = tf.stack([tf.reduce_sum(tf.cast(mask > 0, tf.float32)) for _, _, mask in prepared])
        return replica_sum(counts)

    def _update_metrics(
        self, task_losses: Any, prepared: list, total: Any, labelled: Any, weights: Any = None
    ) -> dict:
        self._loss_tracker.update_state(total)
        for t, (y_safe, pred, mask) in enumerate(prepared):
            # A batch without labels for a task says nothing about its loss.
            self._task_loss_trackers[t].update_state(
                task_losses[t], sample_weight=tf.minimum(labelled[t], 1.0)
            )
            if weights is not None:
                self._task_weight_trackers[t].update_state(weights[t])
            if y_safe is None:
                continue
            for metric in self._task_metrics[t]:
                metric.update_state(y_safe, pred, sample_weight=mask)
        logs = self.get_metrics_result()
        if weights is None:  # evaluation: weights are a training quantity
            weight_keys = {m.name for m in self._task_weight_trackers}
            logs = {k: v for k, v in logs.items() if k not in weight_keys}
        return logs

    def get_metrics_result(self) -> dict[str, Any]:
        """Keras's metric results, with NaN for the loss and metrics of a task
        that had no labelled row since the last reset (instead of 0.0)."""
        # Explicit base call: autograph cannot convert zero-argument super()
        # when a user wraps `train_step` in their own tf.function.
        logs = keras.Model.get_metrics_result(self)
        if getattr(self, "_task_loss_trackers", None) is None:
            return logs
        for t, tracker in enumerate(self._task_loss_trackers):
            seen = tracker.count > 0
            for metric in [tracker, *self._task_metrics[t]]:
                if metric.name not in logs:
                    continue
                value = tf.where(seen, tf.cast(logs[metric.name], tf.float32), float("nan"))
                logs[metric.name] = float(value) if tf.executing_eagerly() else value
        return logs

    def _regularization_loss(self) -> Any:
        if not self.losses:
            return None
        return tf.add_n([tf.cast(loss, tf.float32) for loss in self.losses])

    def train_step(self, data: Any) -> dict[str, Any]:
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        strategy = self.weighting
        state = contracts.step_state(self)  # put back if the batch is not applied
        with tf.GradientTape(persistent=strategy.needs_persistent_tape) as tape:
            representation = None
            if strategy.needs_representation:
                y_pred, representation = self._call_with_representation(x)
            else:
                y_pred = self(x, training=True)
            task_losses, prepared = self._task_losses(y, y_pred, sample_weight)
            regularization = self._regularization_loss()
        labelled = self.labelled_counts(prepared)
        variables = self.trainable_variables
        shared, per_task, own = self.variable_groups()  # Python-side, once per trace
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
            priors=self._priors,
            labelled=labelled,
        )
        grads, weights = strategy.compute_gradients(ctx)
        del tape
        # Invalid labels / non-finite values: the update is not applied (and
        # the ContractGuard callback raises or counts the skip).
        ok = self._contracts.train_checks(self, x, y, task_losses, grads, (shared, per_task, own))
        contracts.apply_if(ok, self.optimizer, grads, variables, state)
        total = self._logged_loss(task_losses, weights)
        # A skipped batch is left out of the logs too.
        return contracts.if_applied(
            ok,
            lambda: self._update_metrics(task_losses, prepared, total, labelled, weights),
            self,
        )

    def _logged_loss(self, task_losses: Any, weights: Any) -> Any:
        # An aggregator's direction has no scalar objective: log the plain
        # sum, as its validation does, so `loss` and `val_loss` compare.
        if isinstance(self.weighting, GradientAggregator):
            return tf.reduce_sum(task_losses)
        return tf.reduce_sum(weights * task_losses)

    def _call_with_representation(self, x: Any) -> tuple[dict[str, Any], list[Any]]:
        """Forward pass that also returns the representation's tensors.

        Runs an internal functional model over the same layers with one more
        outputs, so the representation's tensors are recorded on the tape.
        """
        if not self._representation_tensors:
            raise rep_lib.missing(f"Weighting {type(self.weighting).__name__}")
        reps = self._representation_tensors
        if self._representation_model is None:
            outputs = [self.output[n] for n in self.task_names] + reps
            # Untracked: it shares this model's layers, not a sub-model.
            with graph.untracked():
                self._representation_model = keras.Model(self.input, outputs)
        outs = self._representation_model(x, training=True)
        num_tasks = len(self.task_names)
        return dict(zip(self.task_names, outs[:num_tasks])), list(outs[num_tasks:])

    def test_step(self, data: Any) -> dict[str, Any]:
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y_pred = self(x, training=False)
        task_losses, prepared = self._task_losses(y, y_pred, sample_weight)
        ok = self._contracts.test_checks(self, y, x)
        labelled = self.labelled_counts(prepared)
        _, weights = self.weighting.combine(
            task_losses, training=False, priors=self._priors, labelled=labelled
        )
        total = self._logged_loss(task_losses, weights)
        return contracts.if_applied(
            ok, lambda: self._update_metrics(task_losses, prepared, total, labelled), self, False
        )

    def predict_step(self, data: Any) -> Any:
        contracts.predict_checks(self, data)  # NaN/Inf features raise
        return super().predict_step(data)

    # ------------------------------------- input contracts (mtl_keras.contracts)
    def fit(self, *args: Any, **kwargs: Any) -> Any:
        call = contracts.prepare_fit(self, args, kwargs)
        # The strategy's epoch hook runs first, so that the user's callbacks
        # (BackupAndRestore, checkpoints) save the closed epoch.
        call["callbacks"] = [_WeightingEpochEnd(), *(call.get("callbacks") or [])]
        # Under MultiWorkerMirroredStrategy every worker must draw the same order.
        x, y, _, call = distribute_shuffle.seeded_arrays(
            self, call.pop("x", None), call.pop("y", None), (), call
        )
        return super().fit(x, y, **call)

    def evaluate(self, *args: Any, **kwargs: Any) -> Any:
        return super().evaluate(**contracts.prepare_evaluate(self, args, kwargs))

    def predict(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        return super().predict(**contracts.prepare_predict_call(self, x, args, kwargs))

    def train_on_batch(self, x: Any, y: Any = None, sample_weight: Any = None, **kw: Any) -> Any:
        method = super().train_on_batch
        return contracts.run_on_batch(self, method, "train", x, y, sample_weight, kw)

    def test_on_batch(self, x: Any, y: Any = None, sample_weight: Any = None, **kw: Any) -> Any:
        method = super().test_on_batch
        return contracts.run_on_batch(self, method, "test", x, y, sample_weight, kw)

    def predict_on_batch(self, x: Any) -> Any:
        return contracts.run_predict_on_batch(self, super().predict_on_batch, x)

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
