"""Matplotlib views of explanations and pruning (imported only when plotting)."""

from __future__ import annotations

from typing import Any

import pandas as pd


def _axes(ax: Any, figsize: tuple[float, float]) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize)
    return ax


def plot_importance(
    table: pd.DataFrame,
    ax: Any = None,
    top: int | None = 20,
    annotate: bool = True,
    cmap: str = "viridis",
) -> Any:
    """Heat map of a feature x task importance table.

    Rows are sorted by their largest importance over tasks; the `top` rows
    are shown (all if None).

    Args:
        table: from `importance_table` or `permutation_importance`.
        ax: optional matplotlib axes.
        top: number of features shown.
        annotate: write the values in the cells.
        cmap: matplotlib colour map.

    Example:
    >>> plot_importance(importance_table(attr), top=15)
    """
    order = table.max(axis=1).sort_values(ascending=False).index
    shown = table.loc[order[:top] if top else order]
    ax = _axes(ax, (1.6 + 1.3 * shown.shape[1], 0.8 + 0.32 * shown.shape[0]))
    image = ax.imshow(shown.to_numpy(), aspect="auto", cmap=cmap)
    ax.set_xticks(range(shown.shape[1]), [str(c) for c in shown.columns])
    ax.set_yticks(range(shown.shape[0]), [str(i) for i in shown.index])
    ax.set_xlabel("task")
    ax.set_title("feature importance per task")
    if annotate:
        high = shown.to_numpy().max()
        for i in range(shown.shape[0]):
            for j in range(shown.shape[1]):
                value = shown.iat[i, j]
                ax.text(
                    j, i, f"{value:.2f}", ha="center", va="center", fontsize=8,
                    color="black" if value > 0.6 * high else "white",
                )  # fmt: skip
    ax.figure.colorbar(image, ax=ax)
    ax.figure.tight_layout()
    return ax


def plot_metric_drop(table: pd.DataFrame, ax: Any = None) -> Any:
    """Per-task metric drop vs sparsity (from `compress.metric_drop`).

    Args:
        table: indexed by sparsity, one column per task metric drop.
        ax: optional matplotlib axes.

    Example:
    >>> plot_metric_drop(compress.metric_drop(results))
    """
    ax = _axes(ax, (5.5, 3.5))
    for column in table.columns:
        ax.plot(table.index * 100, table[column], marker="o", label=str(column))
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xlabel("sparsity (%)")
    ax.set_ylabel("metric drop vs dense")
    ax.set_title("per-task metric drop vs sparsity")
    ax.legend()
    ax.figure.tight_layout()
    return ax
