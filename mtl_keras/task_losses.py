"""The per-task losses a `MultiTaskModel` step optimises and logs.

Each task's loss is the mean of `Task.per_sample_loss` over the rows (or
tokens) labelled for that task: `Task.prepare_labels` marks missing labels
with a mask, per-task `sample_weight` scales it, and the mean is global
under `tf.distribute` (`mtl_keras.weighting.replicas`). A task absent from
the data has loss 0 and no labelled row. Works eagerly, in graph mode and
under XLA (no data-dependent Python branches).

Example:
>>> import numpy as np
>>> from mtl_keras import Binary, Regression
>>> tasks = [Binary("click"), Regression("dwell")]
>>> y = {"click": np.array([1.0, -1.0]), "dwell": np.array([2.0, 4.0])}
>>> pred = {"click": np.array([[0.5], [0.9]]), "dwell": np.array([[2.0], [2.0]])}
>>> losses, prepared = task_losses(tasks, y, pred)
>>> [round(float(v), 4) for v in losses]  # click: row 2 unlabelled (-1)
[0.6931, 2.0]
>>> labelled_counts(prepared).numpy().tolist()
[1.0, 2.0]
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import tensorflow as tf

from mtl_keras import contracts
from mtl_keras.tasks import Task
from mtl_keras.weighting.base import GradientAggregator, Weighting
from mtl_keras.weighting.replicas import global_masked_mean, replica_sum

__all__ = ["Prepared", "labelled_counts", "labels_by_task", "logged_loss", "task_losses"]


class Prepared(NamedTuple):
    """One task's step inputs for its metrics: labels (None for a task absent
    from the data), predictions, the mask (labelled and weighted), and the
    task's loss as its own scalar (the stacked vector's entry before
    stacking: a backward pass from it reaches only this task's head)."""

    labels: Any
    predictions: Any
    mask: Any
    loss: Any = None


def labels_by_task(y: Any, names: Sequence[str], what: str = "y") -> dict[str, Any]:
    """`y` (a dict keyed by task name, a list in task order, or one array for
    a single task) as a dict keyed by task name; raises naming the problem.

    Args:
        y: the labels (or per-task `sample_weight`).
        names: the task names, in order.
        what: the argument's name for error messages.

    Example:
    >>> sorted(labels_by_task([1, 2], ["a", "b"]).items())
    [('a', 1), ('b', 2)]
    """
    names = list(names)
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


def task_losses(
    tasks: Sequence[Task], y: Any, y_pred: Any, sample_weight: Any = None
) -> tuple[Any, list[Prepared]]:
    """Float32 `(num_tasks,)` losses, each the mean over the task's labelled
    rows (or tokens), and each task's `Prepared` labels/predictions/mask.

    Args:
        tasks: the task specs in output order (with compile's overrides).
        y: labels, as accepted by `labels_by_task`.
        y_pred: predictions, a dict keyed by task name.
        sample_weight: None, one per-row array for all tasks, or one per task.
    """
    names = [t.name for t in tasks]
    labels = labels_by_task(y, names)
    weights = None
    if sample_weight is not None:
        weights = (
            labels_by_task(sample_weight, names, "sample_weight")
            if isinstance(sample_weight, (dict, list, tuple))
            else {n: sample_weight for n in names}
        )
    losses, prepared = [], []
    for task in tasks:
        pred = y_pred[task.name]
        if task.name not in labels:
            # A task absent from this data set: every row is unlabelled.
            mask = tf.zeros([tf.shape(pred)[0]], tf.float32)
            losses.append(tf.constant(0.0))
            prepared.append(Prepared(None, pred, mask, losses[-1]))
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
        loss = global_masked_mean(tf.reduce_sum(values * mask), tf.reduce_sum(mask))
        losses.append(loss)
        prepared.append(Prepared(y_safe, pred, mask, loss))
    return tf.stack(losses), prepared


def labelled_counts(prepared: Sequence[Prepared]) -> Any:
    """Labelled rows (or tokens) per task in the global batch, float32 (num_tasks,)."""
    counts = tf.stack([tf.reduce_sum(tf.cast(p.mask > 0, tf.float32)) for p in prepared])
    return replica_sum(counts)


def logged_loss(weighting: Weighting, losses: Any, weights: Any) -> Any:
    """The step's logged `loss`: the strategy's weighted sum of the task
    losses, or their plain sum for a gradient aggregator (its direction has
    no scalar objective; its validation logs the same sum, so `loss` and
    `val_loss` compare)."""
    if isinstance(weighting, GradientAggregator):
        return tf.reduce_sum(losses)
    return tf.reduce_sum(weights * losses)
