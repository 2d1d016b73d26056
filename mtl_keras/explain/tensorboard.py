"""Feature x task importance into TensorBoard (image + text summaries)."""

from __future__ import annotations

import io
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from mtl_keras.explain.attributions import integrated_gradients
from mtl_keras.explain.importance import importance_table


def _figure_png(table: pd.DataFrame, top: int | None) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from mtl_keras.explain.plots import plot_importance

    ax = plot_importance(table, top=top)
    buffer = io.BytesIO()
    ax.figure.savefig(buffer, format="png", dpi=90)
    plt.close(ax.figure)
    return buffer.getvalue()


# A few viridis stops (dark blue -> green -> yellow), interpolated linearly.
_RAMP = np.array(
    [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], "float32"
)


def heatmap_pixels(table: pd.DataFrame, top: int | None = 20, cell: int = 16) -> np.ndarray:
    """The importance heat map rendered with numpy alone: uint8 RGB `(H, W, 3)`.

    Rows are features (sorted by their largest importance, the `top` ones),
    columns tasks, each cell a `cell` x `cell` block coloured on a viridis
    ramp from the table's minimum (dark) to its maximum (yellow). No labels:
    the text summary next to it (`<name>/table`) names rows and columns in
    the same order. Used by `log_importance` when matplotlib is absent.

    Args:
        table: feature x task importance.
        top: number of features shown (all if None).
        cell: pixels per cell side.

    Example:
    >>> t = pd.DataFrame({"click": [0.0, 1.0]}, index=["a", "b"])
    >>> px = heatmap_pixels(t, cell=2)
    >>> px.shape, px[0, 0].tolist(), px[-1, -1].tolist()  # "b" (largest) first
    ((4, 2, 3), [253, 231, 37], [68, 1, 84])
    """
    shown = _top_rows(table, top).to_numpy(dtype="float64")
    low, high = np.nanmin(shown), np.nanmax(shown)
    scaled = (shown - low) / (high - low) if high > low else np.zeros_like(shown)
    position = np.nan_to_num(scaled, nan=0.0) * (len(_RAMP) - 1)
    left = np.clip(np.floor(position).astype(int), 0, len(_RAMP) - 2)
    frac = (position - left)[..., None]
    rgb = _RAMP[left] * (1 - frac) + _RAMP[left + 1] * frac
    pixels = np.repeat(np.repeat(rgb, cell, axis=0), cell, axis=1)
    return np.round(pixels).astype("uint8")


def _top_rows(table: pd.DataFrame, top: int | None) -> pd.DataFrame:
    order = table.max(axis=1).sort_values(ascending=False).index
    return table.loc[order[:top] if top else order]


def _heatmap(table: pd.DataFrame, top: int | None) -> Any:
    """`(1, H, W, C)` image tensor: matplotlib's labelled figure if installed,
    else the numpy rendering (so TensorBoard logging never needs matplotlib)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return tf.constant(heatmap_pixels(table, top))[None]
    return tf.io.decode_png(_figure_png(table, top), channels=4)[None]


def log_importance(
    table: pd.DataFrame,
    logdir: str,
    step: int = 0,
    name: str = "feature_importance",
    top: int | None = 20,
) -> None:
    """Writes the table as a heat-map image, a markdown table and scalars.

    Tags: `<name>/heatmap` (image), `<name>/table` (text) and
    `<name>/<task>/<feature>` (one scalar per cell, to follow over epochs).
    The image is matplotlib's labelled heat map when matplotlib is installed
    (`pip install 'mtl_keras[plots]'`), else an unlabelled one rendered with
    numpy (`heatmap_pixels`; rows in the text table's order).

    Args:
        table: feature x task (`importance_table`, `permutation_importance`).
        logdir: TensorBoard log directory (a sub-folder of a run is fine).
        step: summary step (e.g. the epoch).
        name: summary tag.
        top: features shown in the image.

    Example:
    >>> import os, tempfile
    >>> import pandas as pd
    >>> logdir = tempfile.mkdtemp()
    >>> log_importance(pd.DataFrame({"click": [0.7, 0.3]}, index=["a", "b"]), logdir)
    >>> len(os.listdir(logdir))  # one event file
    1
    """
    image = _heatmap(table, top)
    header = "| feature | " + " | ".join(map(str, table.columns)) + " |"
    rule = "|---" * (table.shape[1] + 1) + "|"
    lines = [header, rule]
    # Same row order as the image: largest importance first.
    for feature, row in _top_rows(table, None).iterrows():
        lines.append(f"| {feature} | " + " | ".join(f"{v:.4f}" for v in row) + " |")
    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default():
        tf.summary.image(f"{name}/heatmap", image, step=step)
        tf.summary.text(f"{name}/table", "\n".join(lines), step=step)
        for task in table.columns:
            for feature, value in table[task].items():
                tf.summary.scalar(f"{name}/{task}/{feature}", float(value), step=step)
    writer.flush()
    writer.close()


class ImportanceTensorBoard(keras.callbacks.Callback):
    """Logs the integrated-gradients feature x task table every `every` epochs.

    Args:
        x: a fixed batch of raw rows to explain (a few hundred is plenty).
        logdir: TensorBoard log directory.
        every: epochs between two logs (the last epoch is always logged).
        steps: integration steps.
        top: features shown in the image.

    Example:
    >>> import os, tempfile
    >>> logdir = tempfile.mkdtemp()
    >>> cb = ImportanceTensorBoard(x, logdir, steps=8)
    >>> _ = model.fit(x, y, epochs=1, callbacks=[cb], verbose=0)
    >>> len(os.listdir(logdir)) > 0
    True
    """

    def __init__(
        self, x: Any, logdir: str, every: int = 1, steps: int = 32, top: int | None = 20
    ) -> None:
        super().__init__()
        self.x = x
        self.logdir = logdir
        self.every = int(every)
        self.steps = int(steps)
        self.top = top
        self.tables: dict[int, pd.DataFrame] = {}

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        last = self.params.get("epochs", epoch + 1) - 1 if self.params else epoch
        if (epoch + 1) % self.every and epoch != last:
            return
        table = importance_table(integrated_gradients(self.model, self.x, steps=self.steps))
        self.tables[epoch] = table
        log_importance(table, self.logdir, step=epoch, top=self.top)

    def get_config(self) -> dict[str, Any]:
        # `x` is data, not configuration: not serialized.
        return {"logdir": self.logdir, "every": self.every, "steps": self.steps, "top": self.top}
