"""Single-task baselines: one model per task, same architecture and budget."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mtl_keras.evaluation.report import report
from mtl_keras.tasks import Task, validate_tasks


@dataclasses.dataclass
class TrainResult:
    """What `train_and_evaluate` measured.

    Attributes:
        table: the `report` DataFrame on the evaluation data.
        train_seconds: wall time of `model.fit` (tracing included).
        history: `History.history` of the fit.
        model: the trained model (None when not kept).
    """

    table: Any
    train_seconds: float
    history: dict[str, list[float]]
    model: Any = None

    @property
    def results(self) -> dict[str, dict[str, float]]:
        """task -> metric -> value (numeric columns only; NaN cells dropped)."""
        out = {}
        for task, row in self.table.to_dict(orient="index").items():
            out[task] = {
                k: float(v)
                for k, v in row.items()
                if k != "type" and isinstance(v, (int, float)) and v == v
            }
        return out


@dataclasses.dataclass
class Baselines:
    """Per-task single-task results of `single_task_baselines`.

    Attributes:
        results: task -> metric -> value (feed to `delta_m` as `baselines`).
        train_seconds: task -> wall time of its `fit`.
        runs: task -> its `TrainResult` (table, history, model if kept).
    """

    results: dict[str, dict[str, float]]
    train_seconds: dict[str, float]
    runs: dict[str, TrainResult]

    @property
    def total_train_seconds(self) -> float:
        return float(sum(self.train_seconds.values()))


def _select_labels(data: Any, names: Sequence[str]) -> Any:
    """`data` with only the labels of `names` (dict labels, tuple or Dataset)."""
    if data is None:
        return None
    import tensorflow as tf

    if isinstance(data, tf.data.Dataset):

        def keep(*batch: Any) -> Any:
            x, y = batch[0], {n: batch[1][n] for n in names}
            if len(batch) > 2 and isinstance(batch[2], Mapping):
                return x, y, {n: batch[2][n] for n in names if n in batch[2]}
            return (x, y, *batch[2:])

        return data.map(keep)
    if not isinstance(data, (tuple, list)) or len(data) < 2 or not isinstance(data[1], Mapping):
        raise ValueError("Data must be (x, {task: labels}) or a tf.data.Dataset of such batches.")
    missing = [n for n in names if n not in data[1]]
    if missing:
        raise ValueError(f"Data has no labels for tasks {missing}.")
    return (data[0], {n: data[1][n] for n in names}, *data[2:])


def train_and_evaluate(
    model: Any,
    train_data: Any,
    val_data: Any = None,
    eval_data: Any = None,
    epochs: int = 5,
    batch_size: int = 256,
    fit_kwargs: Mapping[str, Any] | None = None,
    tag_names: Mapping[str, Sequence[str]] | None = None,
    keep_model: bool = True,
) -> TrainResult:
    """Fits a compiled model, times the fit and reports on held-out data.

    Args:
        model: a compiled `MultiTaskModel`.
        train_data: `(x, y)` or a batched `tf.data.Dataset`.
        val_data: passed to `fit` as `validation_data` (may be None).
        eval_data: data for the `report`; defaults to `val_data`, then to
            `train_data`.
        epochs: training epochs.
        batch_size: batch size for in-memory data.
        fit_kwargs: extra `fit` arguments (callbacks, verbose, ...).
        tag_names: passed to `report`.
        keep_model: keep the trained model in the result.

    Example:
    >>> result = train_and_evaluate(model, (x, y), (x, y), epochs=1, batch_size=8,
    ...                             fit_kwargs={"verbose": 0})
    >>> sorted(result.results), len(result.history["loss"])
    (['click', 'dwell'], 1)
    """
    import tensorflow as tf

    kwargs = {"verbose": 0, **dict(fit_kwargs or {})}
    if not isinstance(train_data, tf.data.Dataset):
        kwargs.setdefault("batch_size", batch_size)
        x, y = train_data[0], train_data[1]
        if len(train_data) > 2:
            kwargs.setdefault("sample_weight", train_data[2])
    else:
        x, y = train_data, None
    started = time.perf_counter()
    history = model.fit(x, y, validation_data=val_data, epochs=epochs, **kwargs)
    seconds = time.perf_counter() - started
    target = eval_data if eval_data is not None else val_data
    target = target if target is not None else train_data
    table = report(model, target, tag_names=tag_names, batch_size=max(batch_size, 1024))
    return TrainResult(table, seconds, dict(history.history), model if keep_model else None)


def single_task_baselines(
    build_fn: Callable[[list[Task]], Any],
    tasks: Sequence[Task],
    train_data: Any,
    val_data: Any = None,
    epochs: int = 5,
    batch_size: int = 256,
    optimizer: Callable[[], Any] | str = "adam",
    eval_data: Any = None,
    fit_kwargs: Mapping[str, Any] | None = None,
    tag_names: Mapping[str, Sequence[str]] | None = None,
    seed: int | None = 0,
    keep_models: bool = False,
) -> Baselines:
    """Trains one model per task with the same architecture and budget.

    For every task, `build_fn([task])` builds the model (same builder and
    hyper-parameters as the multi-task model, only one head), it is compiled
    with a fresh `optimizer()` unless `build_fn` compiled it, trained for the
    same `epochs` and `batch_size` on the same rows with only that task's
    labels, and evaluated with `report`.

    Args:
        build_fn: `tasks_subset -> MultiTaskModel`.
        tasks: the task specs (all of them, as for the multi-task model).
        train_data: `(x, {task: labels})` or a `tf.data.Dataset` of them.
        val_data: validation data for `fit` (same form), or None.
        epochs: training epochs per task.
        batch_size: batch size for in-memory data.
        optimizer: a zero-argument callable returning a fresh optimizer, or
            an optimizer name.
        eval_data: data to report on (default: `val_data`, else train data).
        fit_kwargs: extra `fit` arguments for every run (e.g. callbacks).
        tag_names: passed to `report` (Tagging entity F1).
        seed: `keras.utils.set_random_seed(seed)` before each build.
        keep_models: keep the trained models in `runs[task].model`.

    Returns:
        `Baselines` with `.results` (task -> metric -> value),
        `.train_seconds` and `.runs`.

    Example:
    >>> import keras
    >>> import numpy as np
    >>> from mtl_keras import Binary, Regression, builders
    >>> from mtl_keras.evaluation import delta_m
    >>> def build(tasks):
    ...     return builders.shared_bottom(keras.Input((8,)), tasks, trunk_units=(16,))
    >>> x = np.random.rand(16, 8).astype("float32")
    >>> y = {"a": (x[:, 0] > 0.5).astype("float32"), "b": x[:, 1]}
    >>> base = single_task_baselines(build, [Binary("a"), Regression("b")], (x, y),
    ...                              epochs=1, batch_size=8, fit_kwargs={"verbose": 0})
    >>> sorted(base.results)
    ['a', 'b']
    >>> metrics = {"a": ["auc"], "b": ["mae"]}
    >>> delta_m(base.results, base.results, metrics=metrics).value  # Δm of MTL vs these
    0.0
    """
    import keras

    tasks = validate_tasks(tasks)
    results, seconds, runs = {}, {}, {}
    for task in tasks:
        if seed is not None:
            keras.utils.set_random_seed(seed)
        model = build_fn([task])
        if task.name not in getattr(model, "task_names", []):
            raise ValueError(f"build_fn([{task.name!r}]) returned a model without that task.")
        if not model.compiled:
            model.compile(optimizer() if callable(optimizer) else optimizer)
        names = [task.name]
        run = train_and_evaluate(
            model,
            _select_labels(train_data, names),
            _select_labels(val_data, names),
            _select_labels(eval_data, names),
            epochs=epochs,
            batch_size=batch_size,
            fit_kwargs=fit_kwargs,
            tag_names=tag_names,
            keep_model=keep_models,
        )
        results[task.name] = run.results[task.name]
        seconds[task.name] = run.train_seconds
        runs[task.name] = run
    return Baselines(results, seconds, runs)
