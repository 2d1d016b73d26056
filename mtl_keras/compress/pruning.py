"""Magnitude pruning for Keras 3 multi-task models.

Keras 3 has no pruning API (`tensorflow-model-optimization` only supports
Keras 2), so this module provides one, Keras-native:

- `PruningOptimizer` wraps any Keras optimizer. It keeps one non-trainable
  0/1 mask per pruned variable (optimizer variables, so they are saved in a
  `.keras` file and restored on resume together with the step count that
  drives the schedule) and, right after every optimizer step, recomputes the
  masks when the schedule says so and multiplies the weights by them. Doing it
  inside `apply` (rather than from a callback between batches) keeps the
  weights pruned after *every* step, also with `steps_per_execution > 1`,
  inside `tf.function` and under `tf.distribute` (each mirrored copy is
  updated by `strategy.extended.update`, like Keras's own weight decay).
- `pruning_optimizer(model, ...)` picks the prunable variables (kernels and
  embeddings: rank >= 2) and gives shared and task-specific ones separate
  final sparsities (see `MultiTaskModel.variable_groups`).
- `PruningCallback` logs the sparsity reached per group (`sparsity_shared`,
  `sparsity_<task>`) so that History and TensorBoard show the schedule.
- `strip_pruning(model)` removes the wrapper (weights stay zeroed) for export.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from mtl_keras.compress.schedule import PolynomialDecay


def magnitude_mask(weights: Any, sparsity: Any) -> Any:
    """0/1 mask zeroing the `round(sparsity * size)` smallest-magnitude entries.

    Exactly that many entries are zeroed (ties broken by position), so the
    sparsity reached equals the schedule's.

    Args:
        weights: a tensor.
        sparsity: fraction in [0, 1) (scalar tensor or float).

    Example:
    >>> m = magnitude_mask(tf.constant([[0.1, -2.0], [0.5, 0.0]]), 0.5)
    >>> m.numpy().tolist()
    [[0.0, 1.0], [1.0, 0.0]]
    """
    flat = tf.reshape(tf.abs(weights), [-1])
    size = tf.size(flat)
    k = tf.cast(tf.round(tf.cast(sparsity, tf.float32) * tf.cast(size, tf.float32)), tf.int32)
    k = tf.clip_by_value(k, 0, size)
    # Rank of every entry by magnitude (a stable sort: ties by position);
    # the k lowest ranks are pruned. Static shapes only (no top_k with a
    # data-dependent k), so it compiles under XLA.
    order = tf.argsort(flat, stable=True)
    ranks = tf.scatter_nd(order[:, None], tf.range(size), tf.shape(order))
    mask = tf.cast(ranks >= k, flat.dtype)
    return tf.reshape(mask, tf.shape(weights))


class _MaskTable:
    """variable key -> (variable, mask, target). A plain object, so Keras's attribute tracking
    leaves it alone (a dict attribute would be tracked and its variables listed twice)."""

    def __init__(self) -> None:
        self.entries: dict[Any, tuple[Any, Any, float]] = {}


@keras.saving.register_keras_serializable("mtl_keras")
class PruningOptimizer(keras.optimizers.Optimizer):
    """Wraps an optimizer; keeps the weights named in `targets` pruned.

    Args:
        inner_optimizer: the optimizer doing the updates (or its name).
        schedule: a `PolynomialDecay` (or its config); it is driven by the
            inner optimizer's `iterations`, so it resumes with the optimizer.
        targets: dict variable path (`variable.path`) -> final sparsity of
            that variable. Build it with `pruning_optimizer(model, ...)`.
        name: optimizer name.

    Example:
    >>> opt = PruningOptimizer("adam", PolynomialDecay(0.5, 0, 100, 10),
    ...                        targets={"dense/kernel": 0.5})
    """

    def __init__(
        self,
        inner_optimizer: Any,
        schedule: Any,
        targets: dict[str, float],
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise ValueError(
                f"PruningOptimizer takes no optimizer arguments ({sorted(kwargs)}); "
                "set them on the inner optimizer."
            )
        super().__init__(learning_rate=0.0, name=name or "pruning_optimizer")
        self.inner_optimizer = keras.optimizers.get(inner_optimizer)
        if isinstance(schedule, dict):
            schedule = keras.saving.deserialize_keras_object(schedule)
        if not isinstance(schedule, PolynomialDecay):
            raise ValueError(
                f"PruningOptimizer `schedule` must be a PolynomialDecay, got {schedule!r}."
            )
        self.schedule = schedule
        bad = {p: s for p, s in targets.items() if not 0.0 <= float(s) < 1.0}
        if bad:
            raise ValueError(f"PruningOptimizer target sparsities must be in [0, 1), got {bad}.")
        self.targets = {str(p): float(s) for p, s in targets.items()}
        self._table = _MaskTable()

    @property
    def masks(self) -> list[tuple[Any, Any, float]]:
        """(variable, 0/1 mask, final target sparsity) of every pruned variable (after `build`)."""
        return list(self._table.entries.values())

    def build(self, var_list: list[Any]) -> None:
        paths = [v.path for v in var_list]
        missing = sorted(set(self.targets) - set(paths))
        if missing:
            raise ValueError(
                f"PruningOptimizer targets {missing} are not trainable variables of the "
                f"model (variables: {paths})."
            )
        self._table.entries = {}
        self.mask_variables = []
        for variable in var_list:
            if variable.path not in self.targets:
                continue
            mask = self.add_variable_from_reference(variable, "pruning_mask", initializer="ones")
            self.mask_variables.append(mask)
            self._table.entries[self._var_key(variable)] = (
                variable,
                mask,
                self.targets[variable.path],
            )
        self.inner_optimizer.build(var_list)
        super().build(var_list)

    @property
    def variables(self) -> list[Any]:
        return self._variables + self.inner_optimizer.variables

    def apply(self, grads: list[Any], trainable_variables: list[Any] | None = None) -> None:
        if not self.built:
            with keras.name_scope(self.name, caller=self):
                self.build(trainable_variables)
            self.built = True
        self.inner_optimizer.apply(grads, trainable_variables)
        variables = trainable_variables or self._trainable_variables
        pruned = [
            self._table.entries[k]
            for k in (self._var_key(v) for v in variables)
            if k in self._table.entries
        ]
        if pruned:
            self.prune(pruned)

    def prune(self, pruned: list[tuple[Any, Any, float]] | None = None) -> None:
        """Updates the masks if the schedule says so, then zeroes the weights."""
        pruned = list(self._table.entries.values()) if pruned is None else pruned
        step = self.iterations
        update = self.schedule.should_update(step)
        sparsities = [self.schedule.sparsity(step, final) for _, _, final in pruned]

        def mask_update(mask: Any, weights: Any, sparsity: Any) -> Any:
            new = tf.cond(
                update,
                lambda: tf.cast(magnitude_mask(weights, sparsity), mask.dtype),
                lambda: tf.identity(mask),
            )
            return mask.assign(new)

        def weight_update(weights: Any, mask: Any) -> Any:
            return weights.assign(weights * tf.cast(mask, weights.dtype))

        def distributed(distribution: Any, pairs: list, sparsities: list) -> None:
            for (variable, mask, _), sparsity in zip(pairs, sparsities):
                tv, tm = _tf_variable(variable), _tf_variable(mask)
                distribution.extended.update(tm, mask_update, args=(tv, sparsity), group=False)
                distribution.extended.update(tv, weight_update, args=(tm,), group=False)
                average = self._moving_average(variable)
                if average is not None:
                    # use_ema: the averages are copied into the weights (every
                    # ema_overwrite_frequency steps, and by finalize at the end
                    # of fit), so they must hold the same zeros.
                    ta = _tf_variable(average)
                    distribution.extended.update(ta, weight_update, args=(tm,), group=False)

        tf.__internal__.distribute.interim.maybe_merge_call(
            distributed, tf.distribute.get_strategy(), pruned, sparsities
        )

    def _moving_average(self, variable: Any) -> Any:
        """The inner optimizer's EMA of `variable` (`use_ema=True`), else None."""
        inner = self.inner_optimizer
        if not getattr(inner, "use_ema", False):
            return None
        averages = getattr(inner, "_model_variables_moving_average", None)
        if not averages:
            return None
        return averages[inner._get_variable_index(variable)]

    # Delegation to the inner optimizer.
    @property
    def learning_rate(self) -> Any:
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, value: Any) -> None:
        self.inner_optimizer.learning_rate = value

    @property
    def iterations(self) -> Any:
        return self.inner_optimizer.iterations

    def scale_loss(self, loss: Any) -> Any:
        return self.inner_optimizer.scale_loss(loss)

    def finalize_variable_values(self, var_list: list[Any]) -> None:
        # With use_ema the inner optimizer copies its (masked) averages into
        # the weights here; mask once more so no copy can undo the pruning.
        self.inner_optimizer.finalize_variable_values(var_list)
        for variable, mask, _ in self._table.entries.values():
            variable.assign(variable * keras.ops.cast(mask, variable.dtype))

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "inner_optimizer": keras.saving.serialize_keras_object(self.inner_optimizer),
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "targets": dict(self.targets),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> PruningOptimizer:
        config = dict(config)
        config["inner_optimizer"] = keras.saving.deserialize_keras_object(
            config["inner_optimizer"], custom_objects=custom_objects
        )
        config["schedule"] = keras.saving.deserialize_keras_object(
            config["schedule"], custom_objects=custom_objects
        )
        return cls(**config)


def _tf_variable(variable: Any) -> Any:
    return variable.value if isinstance(variable, keras.Variable) else variable


def _pruning_optimizer_of(model: keras.Model) -> PruningOptimizer:
    optimizer = getattr(model, "optimizer", None)
    # Mixed precision wraps the optimizer once more.
    while optimizer is not None and not isinstance(optimizer, PruningOptimizer):
        optimizer = getattr(optimizer, "inner_optimizer", None)
    if optimizer is None:
        raise ValueError(
            f"Model {model.name!r} is not compiled with a PruningOptimizer; build one with "
            "mtl_keras.compress.pruning_optimizer(model, optimizer, schedule)."
        )
    return optimizer


def variable_groups_by_path(model: keras.Model) -> dict[str, str]:
    """Variable path -> "shared" or the task owning it (MultiTaskModel), else "shared"."""
    variables = model.trainable_variables
    groups = {v.path: "shared" for v in variables}
    if hasattr(model, "variable_groups"):
        _, per_task, own = model.variable_groups()
        for name, indices in zip(model.task_names, per_task):
            for i in indices:
                groups[variables[i].path] = name
        for i in own:
            groups.pop(variables[i].path, None)
    return groups


def pruning_optimizer(
    model: keras.Model,
    optimizer: Any = "adam",
    schedule: PolynomialDecay | None = None,
    *,
    shared_sparsity: float | None = None,
    task_sparsity: float | dict[str, float] | None = None,
    min_rank: int = 2,
    exclude: tuple[str, ...] = (),
) -> PruningOptimizer:
    """A `PruningOptimizer` for `model`, with task-aware target sparsities.

    Prunable: trainable variables of rank >= `min_rank` (Dense/Conv kernels,
    embedding tables); biases, norms and the weighting's own parameters are
    kept dense. Shared parameters (used by more than one task) reach
    `shared_sparsity`, each task's own parameters `task_sparsity` (a float or
    a dict per task); both default to `schedule.final_sparsity`. A target of 0
    leaves the group dense.

    Args:
        model: the (built) model to prune; call before `compile`.
        optimizer: the optimizer doing the updates (instance or name).
        schedule: the gradual schedule (default `PolynomialDecay()`).
        shared_sparsity: final sparsity of the shared parameters.
        task_sparsity: final sparsity of each task's own parameters.
        min_rank: smallest variable rank that is pruned.
        exclude: substrings of variable paths never pruned.

    Example:
    >>> opt = pruning_optimizer(model, "adam", PolynomialDecay(0.8, 0, 500, 50),
    ...                         shared_sparsity=0.5, task_sparsity=0.9)
    >>> model.compile(opt, weighting="uncertainty")
    >>> isinstance(model.optimizer, PruningOptimizer)
    True
    """
    schedule = schedule or PolynomialDecay()
    default = schedule.final_sparsity
    shared_sparsity = default if shared_sparsity is None else float(shared_sparsity)
    task_names = list(getattr(model, "task_names", []))
    if isinstance(task_sparsity, dict):
        unknown = sorted(set(task_sparsity) - set(task_names))
        if unknown:
            raise ValueError(
                f"task_sparsity names unknown tasks {unknown}; tasks are {task_names}."
            )
        per_task = {n: float(task_sparsity.get(n, default)) for n in task_names}
    else:
        value = default if task_sparsity is None else float(task_sparsity)
        per_task = {n: value for n in task_names}
    groups = variable_groups_by_path(model)
    paths = [v.path for v in model.trainable_variables]
    duplicated = sorted({p for p in paths if paths.count(p) > 1})
    if duplicated:
        raise ValueError(
            f"Variable paths {duplicated} are not unique; give the layers unique names to prune."
        )
    targets = {}
    for variable in model.trainable_variables:
        group = groups.get(variable.path)
        if group is None or len(variable.shape) < min_rank:
            continue
        if any(pattern in variable.path for pattern in exclude):
            continue
        target = shared_sparsity if group == "shared" else per_task[group]
        if target > 0:
            targets[variable.path] = target
    if not targets:
        raise ValueError(f"No prunable variable in model {model.name!r} (rank >= {min_rank}).")
    return PruningOptimizer(optimizer, schedule, targets)


def sparsity_report(model: keras.Model) -> pd.DataFrame:
    """One row per trainable variable: group, size, sparsity reached, target.

    Args:
        model: any Keras model (pruned or not).

    Example:
    >>> report = sparsity_report(model)
    >>> print(report.head(1).to_string(index=False))  # not pruned: no zeros, no target
                variable  group  size  sparsity  target
    trunk/dense_0/kernel shared    16       0.0     0.0
    >>> sorted(report.group.unique())
    ['click', 'dwell', 'shared']
    """
    groups = variable_groups_by_path(model)
    targets: dict[str, float] = {}
    try:
        targets = _pruning_optimizer_of(model).targets
    except ValueError:
        pass
    rows = []
    for variable in model.trainable_variables:
        if variable.path not in groups:
            continue
        values = np.asarray(keras.ops.convert_to_numpy(variable))
        rows.append(
            {
                "variable": variable.path,
                "group": groups[variable.path],
                "size": int(values.size),
                "sparsity": float(np.mean(values == 0)),
                "target": targets.get(variable.path, 0.0),
            }
        )
    return pd.DataFrame(rows)


def group_sparsity(model: keras.Model, pruned_only: bool = True) -> dict[str, float]:
    """Fraction of zero weights per group ("shared", each task), size-weighted."""
    report = sparsity_report(model)
    if pruned_only:
        report = report[report.target > 0]
    out = {}
    for group, rows in report.groupby("group", sort=False):
        out[str(group)] = float((rows.sparsity * rows["size"]).sum() / rows["size"].sum())
    return out


@keras.saving.register_keras_serializable("mtl_keras")
class PruningCallback(keras.callbacks.Callback):
    """Logs the sparsity reached per group at the end of every epoch.

    Adds `sparsity_shared` and `sparsity_<task>` (over the pruned variables)
    to the epoch logs, so History, CSVLogger and TensorBoard show them. The
    pruning itself happens in the `PruningOptimizer` after every step.

    Example:
    >>> model.compile(pruning_optimizer(model, "adam", PolynomialDecay(0.5, 0, 1, 1)))
    >>> h = model.fit(x, y, batch_size=8, epochs=1, callbacks=[PruningCallback()], verbose=0)
    >>> round(h.history["sparsity_dwell"][0], 1)
    0.5
    """

    def on_train_begin(self, logs: dict | None = None) -> None:
        _pruning_optimizer_of(self.model)  # fail early with a clear message

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None:
            return
        for group, value in group_sparsity(self.model).items():
            logs[f"sparsity_{group}"] = value

    def get_config(self) -> dict[str, Any]:
        return {}


def strip_pruning(model: keras.Model) -> keras.Model:
    """Makes the masks final and removes the pruning wrapper, for export.

    The weights keep their zeros; the model's optimizer becomes the inner one
    (so a `.keras` file saved afterwards carries no masks), and a further
    `fit` no longer prunes. Returns the same model.

    Example:
    >>> model.compile(pruning_optimizer(model, "adam", PolynomialDecay(0.5, 0, 1, 1)))
    >>> _ = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    >>> isinstance(strip_pruning(model).optimizer, PruningOptimizer)
    False
    >>> float(sparsity_report(model).sparsity[0])  # the zeros stay
    0.5
    """
    pruning = _pruning_optimizer_of(model)
    if pruning.built:
        for variable, mask, _ in pruning._table.entries.values():
            variable.assign(variable * keras.ops.cast(mask, variable.dtype))
    inner = pruning.inner_optimizer
    if model.optimizer is pruning:
        model.optimizer = inner
    else:  # mixed precision: LossScaleOptimizer(PruningOptimizer(inner))
        model.optimizer.inner_optimizer = inner
    config = getattr(model, "_mtl_compile_config", None)
    if config is not None:
        config["optimizer"] = keras.saving.serialize_keras_object(model.optimizer)
    # The traced train step closes over the old optimizer.
    model.train_function = None
    return model


def metric_drop(
    results: dict[float, dict[str, float]],
    metrics: list[str],
    lower_is_better: tuple[str, ...] = ("loss", "mse", "mae", "error"),
) -> pd.DataFrame:
    """Per-task metric drop vs sparsity, relative to the dense run.

    Args:
        results: sparsity -> `model.evaluate(..., return_dict=True)` of the
            model pruned to that sparsity; must contain the dense run at 0.0.
        metrics: metric keys to compare (e.g. `["income_auc",
            "never_married_auc"]`).
        lower_is_better: substrings marking metrics where lower is better
            (their drop is pruned - dense instead of dense - pruned).

    Returns:
        DataFrame indexed by sparsity, one column per metric: how much worse
        than dense (positive = worse).

    Example:
    >>> runs = {0.0: {"income_auc": 0.90, "loss": 0.30}, 0.5: {"income_auc": 0.88, "loss": 0.35}}
    >>> metric_drop(runs, ["income_auc", "loss"]).round(2) + 0.0
              income_auc  loss
    sparsity
    0.0             0.00  0.00
    0.5             0.02  0.05
    """
    if 0.0 not in results:
        raise ValueError("metric_drop needs the dense run: results[0.0].")
    dense = results[0.0]
    rows = {}
    for sparsity in sorted(results):
        row = {}
        for metric in metrics:
            if metric not in results[sparsity]:
                raise ValueError(
                    f"Metric {metric!r} is missing at sparsity {sparsity}; "
                    f"available: {sorted(results[sparsity])}."
                )
            sign = -1.0 if any(s in metric for s in lower_is_better) else 1.0
            row[metric] = sign * (dense[metric] - results[sparsity][metric])
        rows[sparsity] = row
    table = pd.DataFrame(rows).T
    table.index.name = "sparsity"
    return table
