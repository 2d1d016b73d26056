"""Per-task evaluation table computed exactly in numpy from predictions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mtl_keras.evaluation.metrics import roc_auc
from mtl_keras.evaluation.tagging import entity_f1, token_accuracy
from mtl_keras.tasks import (
    Binary,
    BoxRegression,
    Multiclass,
    Multilabel,
    Regression,
    Tagging,
    Task,
)


def precision_recall_f1(
    truth: np.ndarray, predicted: np.ndarray, classes: Sequence[int]
) -> dict[str, float]:
    """One-vs-rest precision, recall and F1 per class, plus their macro F1.

    A class never predicted has precision 0 (likewise recall/F1), as in
    scikit-learn with `zero_division=0`.

    Example:
    >>> out = precision_recall_f1(np.array([0, 1, 1]), np.array([0, 1, 0]), [0, 1])
    >>> out["precision_0"], out["recall_1"]
    (0.5, 0.5)
    """
    out: dict[str, float] = {}
    f1s = []
    for c in classes:
        tp = float(np.sum((predicted == c) & (truth == c)))
        n_pred, n_true = float(np.sum(predicted == c)), float(np.sum(truth == c))
        p = tp / n_pred if n_pred else 0.0
        r = tp / n_true if n_true else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        out[f"precision_{c}"], out[f"recall_{c}"], out[f"f1_{c}"] = p, r, f1
        f1s.append(f1)
    out["macro_f1"] = float(np.mean(f1s))
    return out


def regression_metrics(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and R² (R² averaged uniformly over output columns).

    Example:
    >>> regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]))["mae"]
    0.3333333333333333
    """
    truth = truth.reshape(len(truth), -1)
    predicted = predicted.reshape(len(predicted), -1)
    err = predicted - truth
    sst = np.sum((truth - truth.mean(axis=0)) ** 2, axis=0)
    sse = np.sum(err**2, axis=0)
    # A constant target has no variance to explain: R² is undefined (NaN).
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(sst > 0, 1.0 - sse / np.where(sst > 0, sst, 1.0), np.nan)
    return {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "r2": float(np.mean(r2)),
    }


def task_metrics(
    task: Task,
    labels: Any,
    predictions: Any,
    tag_names: Sequence[str] | None = None,
    threshold: float = 0.5,
) -> dict[str, float]:
    """Exact metrics of one task over its labelled rows (or tokens).

    Unlabelled rows follow the task's own convention (`Task.prepare_labels`):
    NaN everywhere, negative values for Binary/Multilabel/Multiclass/Tagging.

    Args:
        task: the task spec.
        labels: labels as passed to `fit` (missing ones marked).
        predictions: the model's output for the task (probabilities or values).
        tag_names: for `Tagging`, id -> BIO tag string; adds entity F1.
        threshold: decision threshold for Binary and Multilabel.

    Returns:
        dict metric -> value, including `rows` (labelled rows, or tokens).

    Example:
    >>> from mtl_keras import Regression
    >>> task_metrics(Regression("y"), np.array([1.0, np.nan]), np.array([2.0, 0.0]))["mae"]
    1.0
    """
    from mtl_keras.contracts import LabelError, validate_label_array

    pred = np.asarray(predictions, dtype="float64")
    labels = validate_label_array(task, labels, "report")
    if labels.ndim == 0 or len(labels) != len(pred):
        raise LabelError(
            f"report: labels of task {task.name!r} have {len(labels) if labels.ndim else 0} "
            f"rows (shape {labels.shape}), its predictions {len(pred)} rows: expected one "
            "label row per prediction row."
        )
    per_row = int(np.prod(labels.shape[1:], dtype=int))
    expected = (
        int(np.prod(pred.shape[1:-1], dtype=int))
        if isinstance(task, (Multiclass, Tagging))
        else int(np.prod(pred.shape[1:], dtype=int))
    )
    if per_row != expected:
        raise LabelError(
            f"report: labels of task {task.name!r} have shape {labels.shape}, its "
            f"predictions {pred.shape}: expected {expected} label value(s) per row."
        )
    if isinstance(task, Tagging):
        y = np.asarray(labels, dtype="float64")
        y = np.where(np.isnan(y), -1, y).astype("int64").reshape(pred.shape[:2])
        ids = pred.argmax(axis=-1)
        keep = (y >= 0) & (y != task.pad_label)
        out = {"rows": int(keep.sum()), "token_accuracy": token_accuracy(y, ids, task.pad_label)}
        if tag_names is not None:
            out.update(entity_f1(np.where(keep, y, -1), ids, tag_names))
        return out
    y = np.asarray(labels, dtype="float64").reshape(len(pred), -1)
    pred = pred.reshape(len(pred), -1)
    if isinstance(task, (Binary, Multilabel, Multiclass)):
        keep = np.all(~np.isnan(y) & (y >= 0), axis=1)
    else:
        keep = np.all(~np.isnan(y), axis=1)
    y, pred = y[keep], pred[keep]
    out: dict[str, float] = {"rows": int(keep.sum())}
    if isinstance(task, Binary):
        truth, predicted = (y[:, 0] > 0.5).astype(int), (pred[:, 0] >= threshold).astype(int)
        out["auc"] = roc_auc(truth, pred[:, 0])
        out["accuracy"] = float(np.mean(truth == predicted)) if len(y) else float("nan")
        out.update(precision_recall_f1(truth, predicted, [0, 1]))
    elif isinstance(task, Multiclass):
        truth, predicted = y[:, 0].astype(int), pred.argmax(axis=1)
        classes = list(range(task.num_classes))
        aucs = [roc_auc(truth == c, pred[:, c]) for c in classes]
        # One-vs-rest macro AUC over the classes present with both outcomes.
        out["auc"] = float(np.nanmean(aucs)) if not np.all(np.isnan(aucs)) else float("nan")
        out["accuracy"] = float(np.mean(truth == predicted)) if len(y) else float("nan")
        out.update(precision_recall_f1(truth, predicted, classes))
    elif isinstance(task, Multilabel):
        truth, predicted = (y > 0.5).astype(int), (pred >= threshold).astype(int)
        aucs = [roc_auc(truth[:, j], pred[:, j]) for j in range(truth.shape[1])]
        out["auc"] = float(np.nanmean(aucs)) if not np.all(np.isnan(aucs)) else float("nan")
        out["accuracy"] = float(np.mean(truth == predicted)) if len(y) else float("nan")
        for j in range(truth.shape[1]):
            scores = precision_recall_f1(truth[:, j], predicted[:, j], [1])
            out.update({f"{k[:-2]}_{j}": v for k, v in scores.items() if k != "macro_f1"})
    elif isinstance(task, (Regression, BoxRegression)):
        out.update(regression_metrics(y, pred))
    else:
        raise ValueError(f"report: no metrics for task type {type(task).__name__}.")
    return out


def predict_with_labels(
    model: Any, data: Any, batch_size: int = 1024
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Predictions and labels aligned row by row.

    Args:
        model: a `MultiTaskModel`.
        data: `(x, y)` with `y` a dict task -> labels, or a `tf.data.Dataset`
            yielding `(x, y)` or `(x, y, sample_weight)` batches (read once, so
            a shuffling dataset stays aligned).
        batch_size: prediction batch size for in-memory `(x, y)`.

    Returns:
        `(predictions, labels)`, dicts keyed by task name.
    """
    import tensorflow as tf

    from mtl_keras.contracts import labels_by_task

    if isinstance(data, tf.data.Dataset):
        preds: dict[str, list] = {}
        labels: dict[str, list] = {}
        for batch in data:
            x, y = batch[0], batch[1]
            if not isinstance(y, Mapping):
                y = {model.task_names[0]: y} if len(model.task_names) == 1 else y
            unknown = [k for k in y if k not in model.task_names] if isinstance(y, Mapping) else []
            if unknown or not isinstance(y, Mapping):
                raise ValueError(
                    f"report: the dataset's labels have keys {unknown} that are not tasks; "
                    f"tasks are {model.task_names}."
                    if unknown
                    else "report: the dataset must yield (x, y) with y a dict keyed by task name."
                )
            out = _predict_eagerly(model, x)
            for name in model.task_names:
                preds.setdefault(name, []).append(np.asarray(out[name]))
                if name in y:
                    labels.setdefault(name, []).append(np.asarray(y[name]))
        return (
            {k: np.concatenate(v) for k, v in preds.items()},
            {k: np.concatenate(v) for k, v in labels.items()},
        )
    if not isinstance(data, (tuple, list)) or len(data) < 2:
        raise ValueError("report: `data` must be (x, y) or a tf.data.Dataset of (x, y).")
    x, y = data[0], data[1]
    if not isinstance(y, Mapping) and type(y).__name__ != "DataFrame":
        if len(model.task_names) != 1:
            raise ValueError("report: `y` must be a dict keyed by task name.")
        y = {model.task_names[0]: y}
    # Keys must be tasks and values valid labels (contracts.LabelError otherwise).
    y = labels_by_task(model, y, "report")
    preds = _predict_arrays(model, x, batch_size)
    return preds, {k: np.asarray(v) for k, v in y.items()}


def _predict_eagerly(model: Any, x: Any) -> dict[str, np.ndarray]:
    """One forward pass without tf.function: evaluating many models in a loop
    then never trips TensorFlow's "frequent retracing" warning (every Keras
    predict function of every model shares one trace counter)."""
    out = model(x, training=False)
    return {k: np.asarray(v) for k, v in out.items()}


def _predict_arrays(model: Any, x: Any, batch_size: int) -> dict[str, np.ndarray]:
    from mtl_keras.contracts import prepare_features

    x, rows = prepare_features(model, x, "report")
    if rows is None:
        return {
            k: np.asarray(v) for k, v in model.predict(x, batch_size=batch_size, verbose=0).items()
        }
    import keras
    import tensorflow as tf

    parts: dict[str, list] = {}
    for start in range(0, rows, batch_size):
        rows_slice = slice(start, start + batch_size)
        # All tensors: Keras refuses a call mixing tensors and arrays.
        batch = keras.tree.map_structure(lambda v, s=rows_slice: tf.convert_to_tensor(v[s]), x)
        for k, v in _predict_eagerly(model, batch).items():
            parts.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}


def report(
    model: Any,
    data: Any,
    tag_names: Mapping[str, Sequence[str]] | None = None,
    batch_size: int = 1024,
    threshold: float = 0.5,
) -> Any:
    """Per-task evaluation table, ignoring unlabelled rows (or tokens).

    Metrics, all computed exactly in numpy (not Keras's streaming estimates):
    - Binary / Multiclass / Multilabel: `auc` (exact; one-vs-rest macro for
      Multiclass, mean over labels for Multilabel), `accuracy`,
      `precision_<c>`, `recall_<c>`, `f1_<c>` per class (per label for
      Multilabel) and `macro_f1`;
    - Regression / BoxRegression: `mae`, `rmse`, `r2`;
    - Tagging: `token_accuracy`, and with `tag_names` `entity_precision`,
      `entity_recall`, `entity_f1` over exact BIO spans.
    `rows` counts the labelled rows (tokens for Tagging). A task absent from
    the labels is left out.

    Args:
        model: a `MultiTaskModel`.
        data: `(x, y)` or a `tf.data.Dataset` of `(x, y)` batches.
        tag_names: per Tagging task, id -> BIO tag (e.g. `wnut16().ner_tags.items`).
        batch_size: prediction batch size for in-memory data.
        threshold: decision threshold for Binary and Multilabel.

    Returns:
        `pandas.DataFrame` indexed by task, one column per metric (NaN where
        a metric does not apply to a task), plus a `type` column.

    Example:
    >>> import keras
    >>> from mtl_keras import Binary, Regression, builders
    >>> model = builders.shared_bottom(keras.Input((3,)), [Binary("a"), Regression("b")],
    ...                                trunk_units=(4,), tower_units=())
    >>> x = np.random.rand(20, 3).astype("float32")
    >>> table = report(model, (x, {"a": (x[:, 0] > .5) * 1.0, "b": x[:, 1]}))
    >>> list(table.index)
    ['a', 'b']
    """
    import pandas as pd

    preds, labels = predict_with_labels(model, data, batch_size)
    rows = {}
    for task in model.tasks:
        if task.name not in labels:
            continue
        names = (tag_names or {}).get(task.name)
        metrics = task_metrics(task, labels[task.name], preds[task.name], names, threshold)
        rows[task.name] = {"type": type(task).__name__, **metrics}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "task"
    return frame
