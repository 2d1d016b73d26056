"""Matplotlib views of explanations and pruning (imported only when plotting)."""

from __future__ import annotations

from typing import Any

import pandas as pd


def require_matplotlib() -> Any:
    """`matplotlib.pyplot`, or an ImportError naming the extra that installs it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError(
            "mtl_keras.explain plots need matplotlib, which is not installed: "
            "pip install 'mtl_keras[plots]' (or pip install matplotlib). "
            "explain.log_importance works without it (numpy-rendered heat map)."
        ) from e
    return plt


def _axes(ax: Any, figsize: tuple[float, float]) -> Any:
    if ax is not None:
        return ax
    plt = require_matplotlib()

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
    >>> import pandas as pd
    >>> table = pd.DataFrame({"click": [0.7, 0.3], "dwell": [0.1, 0.9]}, index=["a", "b"])
    >>> ax = plot_importance(table, top=15)
    >>> [t.get_text() for t in ax.get_xticklabels()]
    ['click', 'dwell']
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
    >>> from mtl_keras import compress
    >>> runs = {0.0: {"a_auc": 0.9}, 0.5: {"a_auc": 0.88}, 0.9: {"a_auc": 0.8}}
    >>> ax = plot_metric_drop(compress.metric_drop(runs, ["a_auc"]))
    >>> ax.get_lines()[0].get_ydata().round(2).tolist()  # one line per metric
    [0.0, 0.02, 0.1]
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
