"""Target-aware bin edges for the piecewise-linear encoding (Gorishniy et al.,
2022, "On Embeddings for Numerical Features in Tabular Deep Learning", the
tree-based bins).

For one numeric column, a decision tree is grown on that column alone against
the labels; its split thresholds, plus the column's minimum and maximum, are
the bin edges. The bins then sit where the labels change instead of at
quantiles. The tree here is multi-task: its impurity sums one term per task,
each normalised by that task's total variance (see `target_bin_edges`).

NumPy only; the edges feed `PiecewiseLinearEncoding` exactly as quantile
edges do (`TabularEncoder.adapt(..., bins="target", targets=labels)`).
"""

from __future__ import annotations

import heapq
from typing import Any, Mapping

import numpy as np

#: Splits that lower the normalised impurity by less than this are round-off,
#: not structure: they are not made.
GAIN_TOLERANCE = 1e-10
#: Integer (class id) targets are one-hot encoded; more classes are refused.
MAX_CLASSES = 256


def target_bin_edges(
    values: Any,
    targets: Mapping[str, Any] | Any,
    num_bins: int = 32,
    min_leaf: int = 64,
) -> list[float]:
    """Bin edges from a best-first regression tree on one feature.

    The tree starts with one leaf holding every row with a finite value; at
    each step it splits the leaf whose best split lowers the impurity most,
    until there are `num_bins` leaves or no split leaves `min_leaf` rows on
    both sides and lowers the impurity. Candidate thresholds lie between
    consecutive distinct values (the midpoint), so a run of equal values is
    never cut: a constant column gives one bin, a column with fewer distinct
    values than `num_bins` fewer bins, and zero-heavy columns need none of the
    special handling of `quantile_bin_edges` (the mass at 0 is one atom, not
    many duplicate quantiles, and bins go where the labels change).

    Impurity, the multi-task generalisation: the sum over tasks of the
    within-leaf squared error of the task's labels (summed over its columns
    for 2-D labels), each task divided by its total squared error around its
    mean, so the whole column has impurity = number of tasks and every task
    counts equally whatever its scale. With one task this is the paper's
    tree: a regression tree (MSE) for numeric labels, and for 0/1 labels a
    Gini classification tree (the within-leaf squared error of 0/1 labels is
    `n p (1 - p)`, half the leaf's weighted Gini impurity); integer labels
    are class ids, one-hot encoded, whose squared error is then the
    multi-class Gini impurity.

    Missing values: rows whose feature is NaN or infinite are left out (as
    in `quantile_bin_edges`); a NaN label (float labels; negative ids for
    integer labels) leaves that row out of that task's statistics only.
    `min_leaf` counts rows, labelled or not. Tasks without any variance
    (constant or unlabelled) carry no information and are ignored; if none
    is left, the column gets one bin.

    Args:
        values: 1-D array of training values of one feature.
        targets: the labels, one 1-D (or `(n, k)`) array or a dict task ->
            array, each with one row per value. Floats are numbers (0/1 for
            binary tasks; NaN marks a missing label, so convert a `-1`
            missing marker to NaN); integers are class ids (negative:
            missing).
        num_bins: at most this many bins (`num_bins + 1` edges).
        min_leaf: fewest rows with a finite value per bin.

    Returns:
        Strictly increasing edges: the minimum, the thresholds, the maximum
        (a constant column gets `[v, v + 1]`, as quantile bins do).

    Example:
    >>> x = np.arange(200.0)
    >>> target_bin_edges(x, (x >= 120).astype("float32"), num_bins=8, min_leaf=10)
    [0.0, 119.5, 199.0]
    >>> labels = {"a": (x >= 50).astype("float32"), "b": 1000.0 * (x >= 150)}
    >>> target_bin_edges(x, labels, num_bins=8, min_leaf=10)
    [0.0, 49.5, 149.5, 199.0]
    """
    x = np.asarray(values, dtype="float64").reshape(-1)
    if num_bins < 1:
        raise ValueError(f"target_bin_edges: num_bins must be >= 1, got {num_bins}.")
    if min_leaf < 1:
        raise ValueError(f"target_bin_edges: min_leaf must be >= 1, got {min_leaf}.")
    labels = target_arrays(targets, len(x), "target_bin_edges")
    finite = np.isfinite(x)
    if not finite.any():
        raise ValueError("target_bin_edges: no finite values to bin.")
    order = np.argsort(x[finite], kind="stable")
    xs = x[finite][order]
    lo_value, hi_value = float(xs[0]), float(xs[-1])
    if lo_value == hi_value:
        return [lo_value, lo_value + 1.0]
    centered, weights = _normalised_columns({k: v[finite][order] for k, v in labels.items()})
    if not weights.size:
        return [lo_value, hi_value]
    tree = _Tree(xs, centered, weights, min_leaf)
    return tree.edges(num_bins)


def bin_impurity(values: Any, targets: Mapping[str, Any] | Any, edges: Any) -> float:
    """The multi-task impurity of a binning of one feature (as minimised by
    `target_bin_edges`): the sum over tasks of the fraction of the task's
    variance left within the bins, from 0 (bins explain every task) to the
    number of tasks with variance (one bin).

    Rows fall into bins as in `PiecewiseLinearEncoding.bin_index` (values
    outside the edges go to the first or last bin).

    Args:
        values: 1-D array of one feature (non-finite values are left out).
        targets: labels as in `target_bin_edges`.
        edges: sorted bin edges.

    Example:
    >>> x = np.arange(100.0)
    >>> y = (x >= 30).astype("float32")
    >>> [round(bin_impurity(x, y, edges), 6) for edges in ([0.0, 99.0], [0.0, 29.5, 99.0])]
    [1.0, 0.0]
    """
    x = np.asarray(values, dtype="float64").reshape(-1)
    labels = target_arrays(targets, len(x), "bin_impurity")
    finite = np.isfinite(x)
    centered, weights = _normalised_columns({k: v[finite] for k, v in labels.items()})
    if not weights.size:
        return 0.0
    inner = np.asarray(edges, dtype="float64")[1:-1]
    bins = np.searchsorted(inner, x[finite], side="right")
    total = 0.0
    for b in np.unique(bins):
        rows = centered[bins == b]
        sse = _sse(np.isfinite(rows).sum(0), np.nansum(rows, 0), np.nansum(rows**2, 0))
        total += float(sse @ weights)
    return total


def target_arrays(
    targets: Mapping[str, Any] | Any, rows: int, caller: str
) -> dict[str, np.ndarray]:
    """Labels as a dict `name -> (rows, k)` float64 array (NaN: missing),
    named `targets[...]` in errors; integer class ids become one-hot columns."""
    if isinstance(targets, Mapping):
        named = {f"targets[{k!r}]": v for k, v in targets.items()}
    else:
        named = {"targets": targets}
    if not named:
        raise ValueError(f"{caller}: `targets` is empty; pass the labels of at least one task.")
    out = {}
    for name, raw in named.items():
        y = np.asarray(raw)
        if y.ndim == 0 or y.shape[0] != rows:
            got = "a scalar" if y.ndim == 0 else f"{y.shape[0]} rows"
            raise ValueError(f"{caller}: {name} has {got}, the feature values have {rows}.")
        if y.dtype.kind == "b":
            y = y.astype("float64")
        if y.dtype.kind in "iu":
            y = _one_hot(y.reshape(rows, -1), name, caller)
        elif y.dtype.kind != "f":
            raise ValueError(f"{caller}: {name} must be numeric labels, got dtype {y.dtype}.")
        out[name] = np.asarray(y, dtype="float64").reshape(rows, -1)
    return out


def _one_hot(ids: np.ndarray, name: str, caller: str) -> np.ndarray:
    if ids.shape[1] != 1:
        raise ValueError(
            f"{caller}: {name} holds integer labels of shape {ids.shape}; integer labels are "
            "class ids, one per row (pass multi-label targets as floats)."
        )
    ids = ids[:, 0]
    classes = np.unique(ids[ids >= 0])
    if classes.size > MAX_CLASSES:
        raise ValueError(
            f"{caller}: {name} has {classes.size} classes; at most {MAX_CLASSES} are one-hot "
            "encoded for target bins."
        )
    onehot = (ids[:, None] == classes[None, :]).astype("float64")
    onehot[ids < 0] = np.nan
    return onehot


def _normalised_columns(labels: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """All label columns centred on their mean (NaN kept: missing), and one
    weight per column, 1 / (its task's total squared error); tasks without
    variance are dropped."""
    columns, weights = [], []
    for y in labels.values():
        labelled = np.isfinite(y)
        count = labelled.sum(axis=0)
        mean = np.where(labelled, y, 0.0).sum(axis=0) / np.maximum(count, 1)
        c = np.where(labelled, y - mean, np.nan)
        spread = [np.ptp(col[np.isfinite(col)]) if np.isfinite(col).any() else 0.0 for col in y.T]
        total = float(np.nansum(c**2))
        if max(spread, default=0.0) == 0 or total == 0:
            continue  # constant or unlabelled: no information about the bins
        columns.append(c)
        weights += [1.0 / total] * c.shape[1]
    if not columns:
        return np.zeros((0, 0)), np.zeros(0)
    return np.concatenate(columns, axis=1), np.asarray(weights)


def _sse(count: np.ndarray, total: np.ndarray, squares: np.ndarray) -> np.ndarray:
    """Squared error around the mean from count, sum and sum of squares."""
    return np.maximum(squares - total**2 / np.maximum(count, 1), 0.0)


class _Tree:
    """Best-first splitting of sorted rows; leaves are row ranges `[lo, hi)`.

    Prefix sums (count, sum, sum of squares per label column) over the
    sorted rows give any leaf's and any split's statistics in O(1), so a
    leaf's best split costs one vectorised pass over its boundaries.
    """

    def __init__(self, xs: np.ndarray, centered: np.ndarray, weights: np.ndarray, min_leaf: int):
        self.xs, self.weights, self.min_leaf = xs, weights, min_leaf
        labelled = np.isfinite(centered)
        y = np.where(labelled, centered, 0.0)
        zero = np.zeros((1, y.shape[1]))
        self.count = np.concatenate([zero, np.cumsum(labelled, axis=0)])
        self.total = np.concatenate([zero, np.cumsum(y, axis=0)])
        self.squares = np.concatenate([zero, np.cumsum(y * y, axis=0)])
        # Row i starts a new distinct value: a split "left = rows < i" is allowed.
        self.boundaries: np.ndarray = np.flatnonzero(xs[1:] > xs[:-1]) + 1

    def impurity(self, lo: Any, hi: Any) -> Any:
        """Normalised impurity of row range(s) `[lo, hi)`."""
        return (
            _sse(
                self.count[hi] - self.count[lo],
                self.total[hi] - self.total[lo],
                self.squares[hi] - self.squares[lo],
            )
            @ self.weights
        )

    def best_split(self, lo: int, hi: int) -> tuple[float, int]:
        """(impurity decrease, first row of the right leaf) of the best split
        of `[lo, hi)` with `min_leaf` rows each side; (0, -1) if none."""
        b = self.boundaries
        start = np.searchsorted(b, lo + self.min_leaf)
        stop = np.searchsorted(b, hi - self.min_leaf, side="right")
        if start >= stop:
            return 0.0, -1
        cut = b[start:stop]
        children = self.impurity(lo, cut) + self.impurity(cut, hi)
        best = int(np.argmin(children))
        return float(self.impurity(lo, hi) - children[best]), int(cut[best])

    def edges(self, num_bins: int) -> list[float]:
        n = len(self.xs)
        heap: list[tuple[float, int, int, int]] = []

        def push(lo: int, hi: int) -> None:
            gain, cut = self.best_split(lo, hi)
            if gain > GAIN_TOLERANCE:
                heapq.heappush(heap, (-gain, lo, hi, cut))

        push(0, n)
        thresholds: list[float] = []
        while heap and len(thresholds) + 1 < num_bins:
            _, lo, hi, cut = heapq.heappop(heap)
            thresholds.append(float(0.5 * (self.xs[cut - 1] + self.xs[cut])))
            push(lo, cut)
            push(cut, hi)
        edges = np.unique([self.xs[0], *thresholds, self.xs[-1]])
        return [float(e) for e in edges]
