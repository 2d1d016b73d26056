"""Matplotlib views for notebooks (matplotlib is imported only when plotting)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _axes(ax: Any, figsize: tuple[float, float]) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize)
    return ax


def plot_task_weights(history: Any, tasks: Sequence[str] | None = None, ax: Any = None) -> Any:
    """Task-weight trajectories (`<task>_weight` per epoch) from a fit.

    Args:
        history: a `keras.callbacks.History` or its `.history` dict.
        tasks: task names (default: every `<task>_weight` key, validation
            keys excluded).
        ax: a matplotlib Axes to draw on (default: a new figure).

    Returns:
        The Axes.

    Example:
    >>> ax = plot_task_weights({"a_weight": [1.0, 0.8], "b_weight": [1.0, 1.2]})
    >>> [line.get_label() for line in ax.get_lines()]
    ['a', 'b']
    """
    logs = getattr(history, "history", history)
    if tasks is None:
        tasks = [
            k[: -len("_weight")] for k in logs if k.endswith("_weight") and not k.startswith("val_")
        ]
    if not tasks:
        raise ValueError("plot_task_weights: no `<task>_weight` keys in the history.")
    ax = _axes(ax, (6, 3.5))
    for t in tasks:
        values = logs[f"{t}_weight"]
        ax.plot(np.arange(1, len(values) + 1), values, marker="o", label=t)
    ax.set_xlabel("epoch")
    ax.set_ylabel("task weight")
    ax.set_title("Task weights")
    ax.legend()
    return ax


def plot_gradient_similarity(
    matrix: np.ndarray, task_names: Sequence[str], ax: Any = None, annotate: bool = True
) -> Any:
    """Heat-map of a task-to-task gradient cosine-similarity matrix.

    Args:
        matrix: `(tasks, tasks)` values in [-1, 1], e.g. from
            `mtl_keras.callbacks.monitoring.gradient_similarity`.
        task_names: row/column labels.
        ax: a matplotlib Axes (default: a new figure).
        annotate: write the value in each cell.

    Example:
    >>> ax = plot_gradient_similarity(np.eye(2), ["a", "b"])
    >>> [t.get_text() for t in ax.get_yticklabels()]
    ['a', 'b']
    """
    matrix = np.asarray(matrix, dtype="float64")
    ax = _axes(ax, (1.2 * len(task_names) + 2, 1.2 * len(task_names) + 1))
    image = ax.imshow(matrix, cmap="bwr", vmin=-1, vmax=1)
    ax.set_xticks(range(len(task_names)), task_names, rotation=45, ha="right")
    ax.set_yticks(range(len(task_names)), task_names)
    if annotate:
        for i in range(matrix.shape[0]):
            for j in range(matrix.shape[1]):
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=8)
    ax.figure.colorbar(image, ax=ax, label="cosine similarity")
    ax.set_title("Gradient similarity (shared parameters)")
    return ax


def plot_gate_utilisation(utilisation: Mapping[str, np.ndarray], ax: Any = None) -> Any:
    """Grouped bars: mean gate weight of each expert, one group per gate.

    Args:
        utilisation: gate key -> `(num_experts,)` mean weights, e.g. from
            `mtl_keras.builders.gates.gate_utilisation(model, x)`.
        ax: a matplotlib Axes (default: a new figure).

    Example:
    >>> ax = plot_gate_utilisation({"a": np.array([0.7, 0.3])})
    >>> [round(float(bar.get_height()), 1) for bar in ax.patches]
    [0.7, 0.3]
    """
    if not utilisation:
        raise ValueError("plot_gate_utilisation: no gates.")
    keys = list(utilisation)
    width = 0.8 / len(keys)
    ax = _axes(ax, (6, 3.5))
    for g, key in enumerate(keys):
        w = np.asarray(utilisation[key]).reshape(-1)
        ax.bar(np.arange(len(w)) + (g - (len(keys) - 1) / 2) * width, w, width, label=key)
    ax.set_xlabel("expert")
    ax.set_ylabel("mean gate weight")
    ax.set_title("Gate utilisation")
    ax.legend()
    return ax
