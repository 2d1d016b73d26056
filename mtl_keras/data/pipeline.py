"""tf.data pipelines for multi-task training."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow as tf

from mtl_keras.contracts import LabelError, string_labels_error, validate_label_array
from mtl_keras.data.gather import gather_batches


def from_arrays(
    features: Any,
    labels: Mapping[str, Any] | None = None,
    batch_size: int = 256,
    shuffle: bool = False,
    seed: int | None = None,
    sample_weight: Mapping[str, Any] | None = None,
    cache: bool = False,
    drop_remainder: bool = False,
    tasks: Sequence[Any] | None = None,
) -> tf.data.Dataset:
    """Batches in-memory arrays into `(features, labels[, sample_weight])`.

    Args:
        features: an array or a dict feature name -> array (raw features).
        labels: dict task name -> label array; missing labels stay as NaN/-1
            and are masked by `MultiTaskModel`.
        batch_size: rows per batch.
        shuffle: reshuffle every epoch (with a buffer of the whole data).
        seed: shuffle seed.
        sample_weight: optional dict task name -> per-row weight or 0/1 mask.
        cache: cache the batched tensors in memory after the first epoch.
        drop_remainder: drop the last incomplete batch (static batch shapes).
        tasks: optional task specs (or a `MultiTaskModel`'s `tasks`): label
            keys must name them and every label must be valid for its task
            or a missing marker (`contracts.LabelError` otherwise), checked
            here rather than at the first bad batch.

    Example:
    >>> import numpy as np
    >>> ds = from_arrays(np.zeros((10, 3), "float32"), {"y": np.ones(10)}, batch_size=4)
    >>> [x.shape[0] for x, _ in ds]
    [4, 4, 2]
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
    columns = list(features.values()) if isinstance(features, Mapping) else [features]
    sizes = {len(c) for c in columns}
    if len(sizes) != 1:
        by_name = (
            {k: len(v) for k, v in features.items()} if isinstance(features, Mapping) else sizes
        )
        raise ValueError(f"Features have different numbers of rows: {by_name}.")
    n = next(iter(sizes))
    specs = {t.name: t for t in tasks} if tasks is not None else {}
    checked = {}
    for name, y in (labels or {}).items():
        if specs and name not in specs:
            raise LabelError(f"Labels have key {name!r}, not a task; tasks are {list(specs)}.")
        y = np.asarray(y)
        if y.dtype.kind in "USO":
            if name in specs:
                validate_label_array(specs[name], y, "from_arrays")
            raise string_labels_error(name, y.dtype)
        if len(y) != n:
            raise ValueError(f"Labels of task {name!r} have {len(y)} rows but features have {n}.")
        if name in specs:
            validate_label_array(specs[name], y, "from_arrays")
        checked[name] = y
    parts: tuple[Any, ...] = (features,)
    if labels is not None:
        parts += (checked,)
    if sample_weight is not None:
        weights = {}
        for name, w in sample_weight.items():
            w = np.asarray(w, dtype="float32")
            if labels is not None and name not in checked:
                raise ValueError(
                    f"`sample_weight` given for task {name!r}, which has no labels "
                    f"(labelled tasks: {list(checked)})."
                )
            if (
                w.ndim == 0
                or len(w) != n
                or (
                    w.ndim > 1
                    and w.shape[1:] != (1,)
                    and w.shape != np.shape(checked.get(name))[:2]
                )
            ):
                raise ValueError(
                    f"`sample_weight` of task {name!r} has shape {w.shape}; expected one "
                    f"weight per row, ({n},)."
                )
            weights[name] = w
        parts += (weights,)
    ds = gather_batches(
        parts if len(parts) > 1 else parts[0], n, batch_size, shuffle, seed, drop_remainder
    )
    if cache and not shuffle:
        ds = ds.cache()
    return ds.prefetch(tf.data.AUTOTUNE)
