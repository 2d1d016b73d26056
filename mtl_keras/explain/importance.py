"""Feature x task importance: from attributions, and by permutation."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pandas as pd

from mtl_keras.explain.attributions import Attributions, feature_dict, pack_inputs
from mtl_keras.inputs import strings_to_tensors


def importance_table(attributions: Attributions, normalize: bool = True) -> pd.DataFrame:
    """Feature x task table of mean |attribution| over rows.

    Per-position attributions (tokens, pixels) are summed per row first, so a
    feature is one input or one categorical column.

    Args:
        attributions: from `integrated_gradients`.
        normalize: divide each task's column by its sum, so columns are
            shares (comparable across tasks whose outputs differ in scale).

    Example:
    >>> from mtl_keras.explain import integrated_gradients
    >>> table = importance_table(integrated_gradients(model, x, steps=16))
    >>> table.index.tolist(), table.columns.tolist()
    (['a', 'b'], ['click', 'dwell'])
    >>> table.sum().round(6).tolist()  # normalize=True: shares per task
    [1.0, 1.0]
    """
    columns = {}
    for task in attributions.values:
        columns[task] = {
            f: float(np.mean(np.abs(v))) for f, v in attributions.per_feature(task).items()
        }
    table = pd.DataFrame(columns)
    table.index.name = "feature"
    if normalize:
        table = table / table.sum(axis=0).replace(0.0, 1.0)
    return table


def _task_loss(task: Any, y: Any, pred: Any) -> float:
    y_safe, mask = task.prepare_labels(y, keras.ops.convert_to_tensor(pred))
    values = keras.ops.convert_to_numpy(task.loss_fn()(y_safe, keras.ops.cast(pred, "float32")))
    mask = keras.ops.convert_to_numpy(mask)
    while values.ndim > mask.ndim:
        values = values.mean(axis=-1)
    denom = mask.sum()
    if denom == 0:
        raise ValueError(f"Task {task.name!r} has no labelled rows in `y`.")
    return float((values * mask).sum() / denom)


def permutation_importance(
    model: keras.Model,
    x: Any,
    y: dict[str, Any],
    tasks: list[str] | None = None,
    *,
    repeats: int = 3,
    seed: int = 0,
    batch_size: int = 1024,
    normalize: bool = False,
) -> pd.DataFrame:
    """Feature x task table: increase of each task's loss when a feature is shuffled.

    A model-agnostic cross-check of `integrated_gradients`: shuffling a
    feature's values across rows breaks its link to the labels; the task's
    loss (its own loss function, over labelled rows) rises by how much the
    task relies on it. Features are the model's inputs; a 2-D numeric input
    is split into its columns (`name[j]`).

    Args:
        model: a `MultiTaskModel` (the task specs give the losses).
        x: inputs (dict of 1-D arrays, or arrays).
        y: dict task -> labels (missing labels marked as in `mtl_keras.tasks`).
        tasks: tasks to score (default: those in `y`).
        repeats: shuffles per feature (averaged).
        seed: shuffle seed.
        batch_size: prediction batch size.
        normalize: divide each column by its sum of positive values.

    Example:
    >>> table = permutation_importance(model, x, y, repeats=2)
    >>> table.index.tolist(), table.columns.tolist()
    (['a', 'b'], ['click', 'dwell'])
    """
    specs = {t.name: t for t in model.tasks}
    tasks = list(tasks or [t for t in model.task_names if t in y])
    unknown = sorted(set(tasks) - set(specs))
    if unknown:
        raise ValueError(f"Unknown tasks {unknown}; the model's tasks are {sorted(specs)}.")
    data = feature_dict(model, x)
    rng = np.random.default_rng(seed)

    def losses(values: dict[str, np.ndarray]) -> dict[str, float]:
        pred = model.predict(
            strings_to_tensors(pack_inputs(model, values)), batch_size=batch_size, verbose=0
        )
        return {t: _task_loss(specs[t], np.asarray(y[t]), pred[t]) for t in tasks}

    reference = losses(data)
    features: list[tuple[str, str, int | None]] = []
    for key, value in data.items():
        if value.ndim == 2 and value.dtype.kind == "f":
            features += [(f"{key}[{j}]", key, j) for j in range(value.shape[1])]
        else:
            features.append((key, key, None))
    rows = {}
    n = len(next(iter(data.values())))
    for label, key, column in features:
        increase = {t: 0.0 for t in tasks}
        for _ in range(repeats):
            order = rng.permutation(n)
            shuffled = dict(data)
            if column is None:
                shuffled[key] = data[key][order]
            else:
                shuffled[key] = data[key].copy()
                shuffled[key][:, column] = data[key][order, column]
            for t, value in losses(shuffled).items():
                increase[t] += (value - reference[t]) / repeats
        rows[label] = increase
    table = pd.DataFrame(rows).T[tasks]
    table.index.name = "feature"
    if normalize:
        table = table / table.clip(lower=0).sum(axis=0).replace(0.0, 1.0)
    return table


def shared_features(table: pd.DataFrame, top: int = 5) -> pd.DataFrame:
    """Which of each task's `top` features the other tasks also rank in their top.

    Returns a DataFrame indexed by feature (union of the top features) with a
    boolean column per task ("in this task's top") and `tasks_using`: the
    number of tasks for which it is a top feature (>= 2: shared).

    Example:
    >>> import pandas as pd
    >>> table = pd.DataFrame({"click": [0.7, 0.2, 0.1], "dwell": [0.6, 0.0, 0.4]},
    ...                      index=["age", "job", "hours"])
    >>> shared_features(table, top=2).query("tasks_using > 1").index.tolist()
    ['age']
    """
    tops = {t: set(table[t].sort_values(ascending=False).head(top).index) for t in table.columns}
    union = sorted(set().union(*tops.values()), key=lambda f: -table.loc[f].max())
    out = pd.DataFrame({t: [f in tops[t] for f in union] for t in table.columns}, index=union)
    out["tasks_using"] = out.sum(axis=1)
    out.index.name = "feature"
    return out
