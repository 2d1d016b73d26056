"""Δm: the average relative gain of a multi-task model over single-task baselines."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

#: Direction of the metrics `report` produces (True: higher is better).
DEFAULT_HIGHER_IS_BETTER: dict[str, bool] = {
    "auc": True,
    "accuracy": True,
    "macro_f1": True,
    "token_accuracy": True,
    "entity_f1": True,
    "entity_precision": True,
    "entity_recall": True,
    "iou": True,
    "r2": True,
    "mae": False,
    "rmse": False,
    "mse": False,
    "loss": False,
}


@dataclasses.dataclass
class DeltaM:
    """Result of `delta_m`.

    Attributes:
        value: Δm in percent; positive = the multi-task model is better.
        per_task: task -> that task's mean signed relative change (percent).
        per_metric: task -> metric -> signed relative change (percent).
        higher_is_better: the direction used for each metric.
        explanation: the formula and conventions, in words.
    """

    value: float
    per_task: dict[str, float]
    per_metric: dict[str, dict[str, float]]
    higher_is_better: dict[str, bool]
    explanation: str

    def __float__(self) -> float:
        return self.value


def _as_nested(table: Any, what: str) -> dict[str, dict[str, float]]:
    """task -> metric -> value from a dict of dicts or a DataFrame indexed by task."""
    if hasattr(table, "to_dict") and hasattr(table, "index"):
        table = table.to_dict(orient="index")
    if not isinstance(table, Mapping):
        raise ValueError(
            f"`{what}` must be a dict task -> {{metric: value}} or a DataFrame indexed "
            f"by task, got {type(table).__name__}."
        )
    return {str(t): dict(m) for t, m in table.items()}


def delta_m(
    results: Any,
    baselines: Any,
    higher_is_better: Mapping[str, bool] | None = None,
    metrics: Mapping[str, list[str]] | list[str] | None = None,
) -> DeltaM:
    """Δm of Maninis et al. (2019), in the LibMTL convention.

        Δm = (1/T) Σ_t (1/N_t) Σ_m (-1)^{l_m} (M_{m,t} - M_{b,t}) / M_{b,t} * 100%

    where `M_{m,t}` is the multi-task model's value of metric m on task t,
    `M_{b,t}` the single-task baseline's, `l_m` = 1 when lower is better
    (then a decrease counts as a gain) and 0 otherwise, `N_t` the number of
    metrics of task t and `T` the number of tasks. Positive Δm: the
    multi-task model is better on average.

    Args:
        results: multi-task results, task -> {metric: value} (or the
            DataFrame of `report`).
        baselines: single-task results in the same form. Every (task, metric)
            used must be present: a missing one raises ValueError.
        higher_is_better: metric -> True if higher is better; merged over
            `DEFAULT_HIGHER_IS_BETTER` (auc, accuracy, f1, r2 up; mae, rmse,
            loss down). A metric used without a known direction raises.
        metrics: which metrics count: a list for all tasks, or task -> list.
            By default every metric of `results[task]` with a known direction
            (so `rows`, per-class columns etc. are skipped).

    Returns:
        `DeltaM` with `.value`, `.per_task`, `.per_metric`, `.explanation`.

    Example:
    >>> mtl = {"a": {"auc": 0.88}, "b": {"mae": 0.9}}
    >>> stl = {"a": {"auc": 0.80}, "b": {"mae": 1.0}}
    >>> round(delta_m(mtl, stl).value, 6)   # (+10% + 10%) / 2
    10.0
    """
    results_ = _as_nested(results, "results")
    baselines_ = _as_nested(baselines, "baselines")
    directions = {**DEFAULT_HIGHER_IS_BETTER, **dict(higher_is_better or {})}
    if not results_:
        raise ValueError("delta_m: `results` is empty.")
    per_metric: dict[str, dict[str, float]] = {}
    used_directions: dict[str, bool] = {}
    for task, values in results_.items():
        if task not in baselines_:
            raise ValueError(
                f"delta_m: no single-task baseline for task {task!r} (baselines have "
                f"{sorted(baselines_)}). Train one, e.g. with single_task_baselines."
            )
        if metrics is None:
            names = [m for m in values if m in directions]
        elif isinstance(metrics, Mapping):
            if task not in metrics:
                raise ValueError(f"delta_m: `metrics` names no metric for task {task!r}.")
            names = list(metrics[task])
        else:
            names = list(metrics)
        if not names:
            raise ValueError(
                f"delta_m: task {task!r} has no metric with a known direction "
                f"(has {sorted(values)}); pass `higher_is_better` or `metrics`."
            )
        per_metric[task] = {}
        for m in names:
            if m not in directions:
                raise ValueError(
                    f"delta_m: direction of metric {m!r} unknown; pass "
                    f"higher_is_better={{{m!r}: True/False}}."
                )
            if m not in values:
                raise ValueError(f"delta_m: results for task {task!r} have no metric {m!r}.")
            if m not in baselines_[task]:
                raise ValueError(
                    f"delta_m: baseline for task {task!r} has no metric {m!r} "
                    f"(has {sorted(baselines_[task])})."
                )
            mtl, base = float(values[m]), float(baselines_[task][m])
            if math.isnan(mtl) or math.isnan(base):
                raise ValueError(f"delta_m: {task}/{m} is NaN (mtl={mtl}, baseline={base}).")
            if base <= 0:
                # Relative change is meaningless (or flips sign) for a baseline
                # at or below zero, e.g. a negative R².
                raise ValueError(
                    f"delta_m: baseline {task}/{m} = {base} must be > 0 for a relative change."
                )
            sign = 1.0 if directions[m] else -1.0
            per_metric[task][m] = sign * (mtl - base) / base * 100.0
            used_directions[m] = directions[m]
    per_task = {t: sum(v.values()) / len(v) for t, v in per_metric.items()}
    value = sum(per_task.values()) / len(per_task)
    dirs = ", ".join(
        f"{m} {'higher' if up else 'lower'} is better" for m, up in sorted(used_directions.items())
    )
    explanation = (
        "Δm = (1/T) Σ_t (1/N_t) Σ_m (-1)^l_m (M_mtl - M_single) / M_single * 100% "
        "(Maninis et al. 2019; LibMTL). l_m = 1 for lower-is-better metrics, so "
        f"every term is positive when the multi-task model is better. Directions: {dirs}. "
        f"T = {len(per_task)} tasks; Δm = {value:+.3f}% "
        f"({'multi-task better' if value > 0 else 'single-task better or equal'} on average)."
    )
    return DeltaM(value, per_task, per_metric, used_directions, explanation)
