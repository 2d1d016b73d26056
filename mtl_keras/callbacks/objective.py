"""A combined multi-task objective as a log key Keras callbacks can monitor."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import keras

from mtl_keras.evaluation.delta_m import delta_m

MODES = ("normalized_loss", "delta_m")


class MultiTaskObjective(keras.callbacks.Callback):
    """Adds `val_mtl_objective` (lower is better) to the epoch logs.

    Place it *before* `keras.callbacks.EarlyStopping` / `ModelCheckpoint` in
    `callbacks=[...]` (with `mode="min"`): Keras hands the same logs dict to every callback in
    order, so they (and `History`, TensorBoard, the progress bar) see the key.

    Modes:
    - `"normalized_loss"`: mean over tasks of `val_<task>_loss` divided by
      its value at the first epoch this callback saw (its baseline), so each
      task counts equally whatever its loss scale (1.0 at that epoch, lower
      is better). The baseline is kept across `fit` calls (`reset()`
      re-bases) and, with `state_path`, across processes: after a crash and
      a `keras.callbacks.BackupAndRestore` resume, the same weights score the
      same.
    - `"delta_m"`: `-Δm` in percent of the validation metrics against
      single-task `baselines` (see `mtl_keras.evaluation.delta_m`); negated so
      that, like a loss, lower is better.

    Args:
        mode: `"normalized_loss"` or `"delta_m"`.
        tasks: task names (default: the model's tasks).
        baselines: for `"delta_m"`: task -> {metric: single-task value}, with
            metric names as logged by the model (e.g. `auc`, `mae`).
        metrics: for `"delta_m"`: metrics to use (default: every metric of
            `baselines[task]`).
        higher_is_better: for `"delta_m"`: extra metric directions.
        name: the key is `<prefix><name>`.
        prefix: `"val_"` (validation logs) or `""` (training logs).
        state_path: JSON file holding the baseline (written atomically when
            it is recorded, read at `on_train_begin` if present); put it next
            to `BackupAndRestore`'s `backup_dir`. Delete it to re-base.

    Example:
    >>> objective = MultiTaskObjective()
    >>> stop = keras.callbacks.EarlyStopping("val_mtl_objective", mode="min", patience=2)
    >>> h = model.fit(x, y, validation_data=(x, y), epochs=2, verbose=0,
    ...               callbacks=[objective, stop])
    >>> len(h.history["val_mtl_objective"])
    2
    """

    def __init__(
        self,
        mode: str = "normalized_loss",
        tasks: Sequence[str] | None = None,
        baselines: Mapping[str, Mapping[str, float]] | None = None,
        metrics: Mapping[str, list[str]] | list[str] | None = None,
        higher_is_better: Mapping[str, bool] | None = None,
        name: str = "mtl_objective",
        prefix: str = "val_",
        state_path: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}, got {mode!r}.")
        if mode == "delta_m" and not baselines:
            raise ValueError('mode="delta_m" needs `baselines` (task -> {metric: value}).')
        self.mode = mode
        self.tasks = None if tasks is None else list(tasks)
        self.baselines = None if baselines is None else {t: dict(m) for t, m in baselines.items()}
        self.metrics_arg = metrics
        self.higher_is_better = dict(higher_is_better or {})
        self.key = f"{prefix}{name}"
        self.prefix = prefix
        self.state_path = None if state_path is None else os.fspath(state_path)
        self._first: dict[str, float] = {}

    @property
    def baseline(self) -> dict[str, float]:
        """The per-task losses the objective divides by (empty until recorded)."""
        return dict(self._first)

    def reset(self) -> None:
        """Forgets the baseline (and deletes `state_path`): the next epoch re-bases."""
        self._first = {}
        if self.state_path and os.path.exists(self.state_path):
            os.remove(self.state_path)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        # Not re-based here: a resumed (or continued) run keeps its baseline.
        state = self.load_state()
        if state:
            if state.get("key") != self.key:
                raise ValueError(
                    f"MultiTaskObjective: {self.state_path} holds the baseline of "
                    f"{state.get('key')!r}, not {self.key!r}."
                )
            self._first = {t: float(v) for t, v in state.get("baseline", {}).items()}

    def load_state(self) -> dict[str, Any]:
        """The `state_path` file's content (`{}` without one)."""
        if not self.state_path or not os.path.exists(self.state_path):
            return {}
        with open(self.state_path, encoding="utf-8") as f:
            return json.load(f)

    def save_state(self, **sections: Any) -> None:
        """Writes the baseline and `sections` (merged into the file) atomically."""
        if not self.state_path:
            return
        state = {**self.load_state(), **sections, "key": self.key, "baseline": self._first}
        folder = os.path.dirname(os.path.abspath(self.state_path))
        os.makedirs(folder, exist_ok=True)
        tmp = f"{self.state_path}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path)  # atomic: a crash leaves old or new

    def _task_names(self) -> list[str]:
        if self.tasks is not None:
            return self.tasks
        if self.mode == "delta_m":
            return list(self.baselines)
        return list(getattr(self.model, "task_names", []))

    def _get(self, logs: Mapping[str, Any], key: str) -> float:
        if key not in logs:
            hint = " (did you pass validation_data?)" if self.prefix == "val_" else ""
            raise ValueError(
                f"MultiTaskObjective: log key {key!r} is missing{hint}; got {sorted(logs)}."
            )
        return float(logs[key])

    def compute(self, logs: Mapping[str, Any]) -> float:
        """The objective from one epoch's logs (records first-epoch losses)."""
        names = self._task_names()
        if not names:
            raise ValueError("MultiTaskObjective: no tasks; pass `tasks`.")
        if self.mode == "normalized_loss":
            losses = {t: self._get(logs, f"{self.prefix}{t}_loss") for t in names}
            if not self._first:
                self._first = dict(losses)
                self.save_state()
            missing = sorted(set(names) - set(self._first))
            if missing:
                raise ValueError(
                    f"MultiTaskObjective: no baseline for tasks {missing} (baseline has "
                    f"{sorted(self._first)}); call reset() to re-base."
                )
            # A task whose first loss is 0 cannot be normalised: count it as 1.
            return sum(
                losses[t] / self._first[t] if self._first[t] > 0 else 1.0 for t in names
            ) / len(names)
        results = {}
        for t in names:
            wanted = self.metrics_arg
            if isinstance(wanted, Mapping):
                wanted = wanted.get(t)
            ms = list(wanted) if wanted is not None else list(self.baselines.get(t, {}))
            results[t] = {m: self._get(logs, f"{self.prefix}{t}_{m}") for m in ms}
        return -delta_m(results, self.baselines, self.higher_is_better).value

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is None:
            return
        logs[self.key] = self.compute(logs)


class MultiTaskEarlyStopping(keras.callbacks.EarlyStopping):
    """`keras.callbacks.EarlyStopping` on a `MultiTaskObjective`.

    Computes the objective itself and then defers to Keras's early stopping
    (patience, `min_delta`, `restore_best_weights`, ... unchanged), so no
    extra callback is needed. To also checkpoint on it, use a
    `MultiTaskObjective` before `ModelCheckpoint` instead.

    With the objective's `state_path`, the early-stopping counters (`best`,
    `wait`, `best_epoch`) are saved there after every epoch and restored at
    `on_train_begin`, so a `BackupAndRestore` resume does not restart the
    patience. (`restore_best_weights` keeps its weights in memory only: after
    a resume they are those of the best epoch since the resume.)

    Args:
        objective: a `MultiTaskObjective` (default: normalised validation
            losses).
        **kwargs: `keras.callbacks.EarlyStopping` arguments except
            `monitor`/`mode` (set to the objective's key and "min").

    Example:
    >>> stop = MultiTaskEarlyStopping(patience=3, restore_best_weights=True)
    >>> stop.monitor
    'val_mtl_objective'
    """

    def __init__(self, objective: MultiTaskObjective | None = None, **kwargs: Any) -> None:
        for arg in ("monitor", "mode"):
            if arg in kwargs:
                raise ValueError(f"MultiTaskEarlyStopping sets `{arg}` from the objective.")
        self.objective = objective or MultiTaskObjective()
        super().__init__(monitor=self.objective.key, mode="min", **kwargs)

    def set_model(self, model: keras.Model) -> None:
        super().set_model(model)
        self.objective.set_model(model)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.objective.on_train_begin(logs)
        super().on_train_begin(logs)
        saved = self.objective.load_state().get("early_stopping")
        if saved:
            self.best, self.wait = saved["best"], saved["wait"]
            self.best_epoch = saved["best_epoch"]

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        # The key may already be there if a MultiTaskObjective ran earlier.
        if logs is not None and self.objective.key not in logs:
            self.objective.on_epoch_end(epoch, logs)
        super().on_epoch_end(epoch, logs)
        best = None if self.best is None else float(self.best)
        counters = {"best": best, "wait": int(self.wait), "best_epoch": int(self.best_epoch)}
        self.objective.save_state(early_stopping=counters)
