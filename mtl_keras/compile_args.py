"""What `MultiTaskModel.compile` does with its arguments, before Keras sees them.

- `task_overrides`: the per-task `loss`/`metrics`/`loss_weights` dicts,
  checked against the task names and applied to copies of the task specs.
- `weighting_for`: the strategy, checked against the tasks' static weights
  and built for the tasks.
- `to_config` / `from_config`: the compile config saved in a `.keras` file
  (only what the caller passed; measured defaults are filled in again).

Example:
>>> from mtl_keras import Binary, Regression
>>> tasks = task_overrides([Binary("a"), Regression("b")], loss_weights={"b": 2.0})
>>> [t.weight for t in tasks]
[1.0, 2.0]
>>> weighting_for("famo", tasks, has_representation=False)
Traceback (most recent call last):
ValueError: Weighting FAMO does not apply static task weights, but tasks have weights {'b': 2.0} (task spec `weight` or `compile(loss_weights=...)`); drop them or use a strategy that applies them (static, uncertainty, dwa, rlw, imtl_l).
"""

from __future__ import annotations

from typing import Any, Sequence

import keras

from mtl_keras import weighting as weighting_lib
from mtl_keras.tasks import Task
from mtl_keras.weighting.base import Weighting

__all__ = ["from_config", "task_overrides", "to_config", "weighting_for"]

_PER_TASK = ("loss", "metrics", "loss_weights")


def task_overrides(
    tasks: Sequence[Task],
    loss: dict[str, Any] | None = None,
    metrics: dict[str, list[Any]] | None = None,
    loss_weights: dict[str, float] | None = None,
) -> list[Task]:
    """Copies of `tasks` with compile's per-task overrides applied.

    Args:
        tasks: the model's task specs.
        loss: optional dict task name -> loss.
        metrics: optional dict task name -> list of metrics.
        loss_weights: optional dict task name -> static weight.
    """
    names = [t.name for t in tasks]
    for arg_name, arg in zip(_PER_TASK, (loss, metrics, loss_weights)):
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
    effective = []
    for task in tasks:
        config = task.get_config()
        if loss and task.name in loss:
            config["loss"] = keras.saving.serialize_keras_object(loss[task.name])
        if metrics and task.name in metrics:
            config["metrics"] = [keras.saving.serialize_keras_object(m) for m in metrics[task.name]]
        if loss_weights and task.name in loss_weights:
            config["weight"] = loss_weights[task.name]
        effective.append(type(task).from_config(config))
    return effective


def weighting_for(weighting: Any, tasks: Sequence[Task], has_representation: bool) -> Weighting:
    """The strategy for `weighting` (a name or an instance), built for `tasks`
    with its Jacobian source chosen; raises if it would silently ignore the
    tasks' static weights or was built for other tasks."""
    strategy = weighting_lib.get(weighting)
    names = [t.name for t in tasks]
    weighted = {t.name: t.weight for t in tasks if float(t.weight) != 1.0}
    if not strategy.applies_priors and weighted:
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
        strategy.build_for_tasks(list(tasks))
    strategy.jacobian_source = strategy.select_source(has_representation)
    return strategy


def to_config(
    optimizer: Any,
    strategy: Weighting,
    loss: dict[str, Any] | None,
    metrics: dict[str, list[Any]] | None,
    loss_weights: dict[str, float] | None,
    contract_options: dict[str, Any],
    keras_kwargs: dict[str, Any],
) -> dict[str, Any]:
    """The compile config to save: the caller's arguments, serialized."""
    serialize = keras.saving.serialize_keras_object
    return {
        "optimizer": serialize(optimizer),
        "weighting": serialize(strategy),
        "loss": None if loss is None else {k: serialize(v) for k, v in loss.items()},
        "metrics": None
        if metrics is None
        else {k: [serialize(m) for m in v] for k, v in metrics.items()},
        "loss_weights": loss_weights,
        **contract_options,
        **{k: v for k, v in keras_kwargs.items() if k in ("jit_compile", "steps_per_execution")},
    }


def from_config(config: dict[str, Any]) -> dict[str, Any]:
    """`compile` keyword arguments from a saved compile config."""
    config = dict(config)
    deserialize = keras.saving.deserialize_keras_object
    config["optimizer"] = keras.optimizers.deserialize(config["optimizer"])
    if config.get("loss"):
        config["loss"] = {k: deserialize(v) for k, v in config["loss"].items()}
    if config.get("metrics"):
        config["metrics"] = {k: [deserialize(m) for m in v] for k, v in config["metrics"].items()}
    return config
