"""`MultiTaskModel`: a functional Keras model that knows its tasks.

The trainer's outline; each step lives in its own module: `compile` (compile_args,
compile_defaults) -> `train_step` (task_losses, the strategy's `compute_gradients`,
contracts, task_metrics) -> `fit` (contracts, the strategy's epoch hook, distribute).
"""

from __future__ import annotations

from typing import Any, cast

import keras
import tensorflow as tf

from mtl_keras import compile_args, contracts, graph, parameters, task_losses, task_metrics
from mtl_keras import representation as rep_lib
from mtl_keras.compile_defaults import compile_defaults
from mtl_keras.distribute import keras_fixes, metric_sync
from mtl_keras.distribute import shuffle as distribute_shuffle
from mtl_keras.layers._frozen import keep_frozen
from mtl_keras.representation import RepresentationError
from mtl_keras.step_logs import make_function as packed_logs_function
from mtl_keras.tasks import Task, validate_tasks
from mtl_keras.weighting.base import StepContext, Weighting

__all__ = ["MultiTaskModel", "RepresentationError"]


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
        self._task_layer_ids = parameters.task_layer_ids([outputs[n] for n in names])
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

    def variable_groups(self) -> tuple[list[int], list[list[int]], list[int]]:
        """Indices into `trainable_variables`: (shared, per-task, weighting's own)."""
        own = self.weighting.trainable_variables if self.weighting is not None else ()
        return parameters.variable_groups(self, self._task_layer_ids, own)

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
                Unset `steps_per_execution` and `jit_compile` get the measured
                defaults of `mtl_keras.compile_defaults`.
        """
        if kwargs.get("weighted_metrics"):
            raise ValueError(
                "MultiTaskModel.compile does not take `weighted_metrics`: pass per-task "
                "`sample_weight` to fit and metrics through `metrics`."
            )
        on_nonfinite = kwargs.pop("on_nonfinite", "raise")
        allow_nonfinite = kwargs.pop("allow_nonfinite_features", ())
        tasks = compile_args.task_overrides(self._tasks, loss, metrics, loss_weights)
        strategy = compile_args.weighting_for(
            weighting, tasks, has_representation=bool(self._representation_tensors)
        )
        # Unset steps_per_execution / jit_compile get measured defaults; the
        # saved compile config keeps only what the caller passed.
        super().compile(optimizer=optimizer, **compile_defaults(strategy, kwargs))
        old = getattr(self, "weighting", None)
        if old is not None and old is not strategy:
            # Recompiling: the old strategy's variables must leave the model
            # (optimizer slots, `.keras` files).
            graph.untrack(self, old)
        self._effective_tasks = tasks
        self.weighting = strategy
        self._contracts = contracts.StepGuard(self, on_nonfinite, allow_nonfinite)
        self._priors = tf.constant([float(t.weight) for t in tasks], tf.float32)
        task_metrics.build(self, tasks)
        contract_options = {
            "on_nonfinite": on_nonfinite,
            "allow_nonfinite_features": list(self._contracts.allowed),
        }
        self._mtl_compile_config = compile_args.to_config(
            self.optimizer, strategy, loss, metrics, loss_weights, contract_options, kwargs
        )

    @property
    def metrics(self) -> list[Any]:
        return [*super().metrics, *task_metrics.listed(self)]

    def get_compile_config(self) -> dict[str, Any]:
        if self.compiled and hasattr(self, "_mtl_compile_config"):
            return dict(self._mtl_compile_config)
        return {}

    def compile_from_config(self, config: dict[str, Any]) -> None:
        self.compile(**compile_args.from_config(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    # ------------------------------------------------------------ train/test
    def _labels_by_task(self, y: Any, what: str = "y") -> dict[str, Any]:
        # Read by mtl_keras.contracts (which task_losses imports).
        return task_losses.labels_by_task(y, self.task_names, what)

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

    def _task_losses(self, y: Any, y_pred: Any, sample_weight: Any) -> tuple[Any, list]:
        return task_losses.task_losses(self._effective_tasks, y, y_pred, sample_weight)

    def get_metrics_result(self) -> dict[str, Any]:
        """Keras's metric results, with NaN for the loss and metrics of a task
        that had no labelled row since the last reset (instead of 0.0)."""
        # Explicit base call: autograph cannot convert zero-argument super()
        # when a user wraps `train_step` in their own tf.function.
        return task_metrics.nan_for_unlabelled(self, keras.Model.get_metrics_result(self))

    def train_step(self, data: Any) -> dict[str, Any]:
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        strategy = cast(Weighting, self.weighting)  # set by compile
        state = contracts.step_state(self)  # put back if the batch is not applied
        with tf.GradientTape(persistent=strategy.needs_persistent_tape) as tape:
            representation = None
            if strategy.needs_representation:
                y_pred, representation = self._call_with_representation(x)
            else:
                y_pred = self(x, training=True)
            losses, prepared = self._task_losses(y, y_pred, sample_weight)
            regularization = (
                tf.add_n([tf.cast(v, tf.float32) for v in self.losses]) if self.losses else None
            )
        labelled = task_losses.labelled_counts(prepared)
        shared, per_task, own = self.variable_groups()  # Python-side, once per trace
        ctx = StepContext(
            tape=tape,
            task_losses=losses,
            regularization_loss=regularization,
            variables=self.trainable_variables,
            shared=shared,
            task_specific=per_task,
            own=own,
            scale_loss=self.optimizer.scale_loss,
            num_replicas=tf.distribute.get_strategy().num_replicas_in_sync,
            representation=representation,
            priors=self._priors,
            labelled=labelled,
            per_task_losses=[p.loss for p in prepared],
        )
        grads, weights = strategy.compute_gradients(ctx)
        del tape
        # Invalid labels / non-finite values: not applied (ContractGuard raises or counts).
        ok = self._contracts.train_checks(self, x, y, losses, grads, (shared, per_task, own))
        contracts.apply_if(ok, self.optimizer, grads, ctx.variables, state)
        total = task_losses.logged_loss(strategy, losses, weights)
        # A skipped batch is left out of the logs too.
        logs = contracts.if_applied(
            ok,
            lambda: task_metrics.update(self, losses, prepared, total, labelled, weights),
            self,
        )
        # Under tf.distribute: results of the replicas' summed metric states.
        return metric_sync.global_logs(self, logs)

    def _call_with_representation(self, x: Any) -> tuple[dict[str, Any], list[Any]]:
        """Forward pass that also records the representation's tensors on the tape."""
        if self._representation_model is None:
            strategy = f"Weighting {type(self.weighting).__name__}"
            reps = self._representation_tensors
            with graph.untracked():  # it shares this model's layers, not a sub-model
                self._representation_model = rep_lib.tapped_model(self, reps, strategy)
        return rep_lib.call_tapped(self._representation_model, x, self.task_names)

    def test_step(self, data: Any) -> dict[str, Any]:
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y_pred = self(x, training=False)
        losses, prepared = self._task_losses(y, y_pred, sample_weight)
        ok = self._contracts.test_checks(self, y, x)  # labels; NaN/Inf features
        labelled = task_losses.labelled_counts(prepared)
        strategy = cast(Weighting, self.weighting)  # set by compile
        _, weights = strategy.combine(
            losses, training=False, priors=self._priors, labelled=labelled
        )
        total = task_losses.logged_loss(strategy, losses, weights)
        logs = contracts.if_applied(
            ok, lambda: task_metrics.update(self, losses, prepared, total, labelled), self, False
        )
        return metric_sync.global_logs(self, logs)

    def predict_step(self, data: Any) -> Any:
        contracts.predict_checks(self, data)  # NaN/Inf features raise
        return super().predict_step(data)

    # ------------------------------------- input contracts (mtl_keras.contracts)
    def fit(self, *args: Any, **kwargs: Any) -> Any:
        call = contracts.prepare_fit(self, args, kwargs)
        # A restore by an earlier fit's BackupAndRestore must not skip epochs here.
        self._initial_epoch = None
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
        # MWMS: Keras fails to reduce the PerReplica batch; build from its spec (keras_fixes).
        if not keras_fixes.symbolic_build(self, iterator, data_batch):
            super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        contracts.build_optimizer(self)  # before the trace: traced once, not twice

    def _make_function(self, step_function: Any) -> Any:
        # The logs leave the step as one tensor: under MWMS for one all-reduce
        # (Keras's per-log reduce fails, see keras_fixes), else see step_logs.
        function = keras_fixes.step_function(self, step_function)
        return function or packed_logs_function(self, step_function, super()._make_function)

    # ----------------------------------------------------------- serialization
    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["tasks"] = [keras.saving.serialize_keras_object(t) for t in self._tasks]
        config["representation"] = self.representation
        return config
