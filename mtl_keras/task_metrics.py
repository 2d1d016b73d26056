"""Per-task logging of a `MultiTaskModel`: `<task>_loss`, `<task>_<metric>`
and, in training only, `<task>_weight`.

The trackers live on the model (`_loss_tracker`, `_task_loss_trackers`,
`_task_weight_trackers`, `_task_metrics`, set by `build`; their names are
also the paths of their state in a `.keras` file). A task with no labelled
row since the last reset logs NaN ("no data"), not 0.0 ("perfect").

Example:
>>> import keras, numpy as np
>>> from mtl_keras import Binary, MultiTaskModel, Regression
>>> x = keras.Input((3,))
>>> tasks = [Binary("click"), Regression("dwell")]
>>> model = MultiTaskModel(x, {t.name: t.head(x) for t in tasks}, tasks=tasks)
>>> model.compile("sgd")
>>> y = {"click": np.full(4, np.nan), "dwell": np.ones(4)}  # no click label
>>> logs = model.evaluate(np.ones((4, 3)), y, verbose=0, return_dict=True)
>>> bool(np.isnan(logs["click_loss"])), bool(np.isnan(logs["dwell_loss"]))
(True, False)
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
import tensorflow as tf

from mtl_keras import graph
from mtl_keras.scalar_mean import ScalarMean
from mtl_keras.task_losses import Prepared
from mtl_keras.tasks import Task

__all__ = ["build", "listed", "nan_for_unlabelled", "update"]


def build(model: keras.Model, tasks: Sequence[Task]) -> None:
    """Creates `model`'s trackers for `tasks` (replacing those of an earlier
    compile: they are not auto-tracked, `listed` exposes them)."""
    names = [t.name for t in tasks]
    with graph.untracked():
        model._loss_tracker = ScalarMean(name="loss")
        model._task_metrics = [t.build_metrics() for t in tasks]
        model._task_loss_trackers = [ScalarMean(name=f"{n}_loss") for n in names]
        model._task_weight_trackers = [ScalarMean(name=f"{n}_weight") for n in names]


def listed(model: keras.Model) -> list[Any]:
    """The per-task trackers and metrics, in task order (for `model.metrics`)."""
    metrics: list[Any] = []
    for t, tracker in enumerate(getattr(model, "_task_loss_trackers", None) or []):
        metrics += [tracker, model._task_weight_trackers[t], *model._task_metrics[t]]
    strategy = getattr(model, "weighting", None)
    return metrics + (strategy.log_trackers() if strategy is not None else [])


def update(
    model: keras.Model,
    task_losses: Any,
    prepared: Sequence[Prepared],
    total: Any,
    labelled: Any,
    weights: Any = None,
) -> dict[str, Any]:
    """Updates the trackers with one step and returns the logs.

    Args:
        model: the compiled model (its trackers from `build`).
        task_losses: float32 (num_tasks,), from `mtl_keras.task_losses`.
        prepared: each task's labels, predictions and mask.
        total: the logged `loss`.
        labelled: labelled rows per task (`labelled_counts`).
        weights: the strategy's task weights; None in evaluation (weights are
            a training quantity and are left out of the logs).
    """
    model._loss_tracker.update_state(total)
    for t, (y_safe, pred, mask, _) in enumerate(prepared):
        # A batch without labels for a task says nothing about its loss.
        model._task_loss_trackers[t].update_state(
            task_losses[t], sample_weight=tf.minimum(labelled[t], 1.0)
        )
        if weights is not None:
            model._task_weight_trackers[t].update_state(weights[t])
        if y_safe is None:
            continue
        for metric in model._task_metrics[t]:
            metric.update_state(y_safe, pred, sample_weight=mask)
    model.weighting.update_logs(task_losses, labelled, model._priors)  # e.g. Uncertainty's
    logs = model.get_metrics_result()
    if weights is None:
        weight_keys = {m.name for m in model._task_weight_trackers}
        logs = {k: v for k, v in logs.items() if k not in weight_keys}
    return logs


def nan_for_unlabelled(model: keras.Model, logs: dict[str, Any]) -> dict[str, Any]:
    """`logs` with NaN for the loss and metrics of each task that had no
    labelled row since the last reset, and for the total `loss` and the task
    weights when no batch counted at all (an epoch whose data ran out, every
    batch skipped): "no data", not 0.0. Autograph-safe; floats when eager."""

    def nan_unless(seen: Any, metric: Any) -> None:
        if metric.name in logs:
            value = tf.where(seen, tf.cast(logs[metric.name], tf.float32), float("nan"))
            logs[metric.name] = float(value) if tf.executing_eagerly() else value

    for t, tracker in enumerate(getattr(model, "_task_loss_trackers", None) or []):
        for metric in [tracker, *model._task_metrics[t]]:
            nan_unless(tracker.count > 0, metric)
    total = getattr(model, "_loss_tracker", None)
    if total is not None:
        # Updated together with the task weights on every counted batch.
        counted = total.count > 0
        for tracker in [total, *(getattr(model, "_task_weight_trackers", None) or [])]:
            nan_unless(counted, tracker)
    return logs
