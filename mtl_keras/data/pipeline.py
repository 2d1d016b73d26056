"""tf.data pipelines for multi-task training."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import tensorflow as tf

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
    for name, y in (labels or {}).items():
        if len(y) not in sizes or len(sizes) != 1:
            raise ValueError(
                f"Labels of task {name!r} have {len(y)} rows but features have {sizes}."
            )
    if len(sizes) != 1:
        raise ValueError(f"Features have different numbers of rows: {sorted(sizes)}.")
    n = sizes.pop()
    parts: tuple[Any, ...] = (features,)
    if labels is not None:
        parts += ({k: np.asarray(v) for k, v in labels.items()},)
    if sample_weight is not None:
        parts += ({k: np.asarray(v, dtype="float32") for k, v in sample_weight.items()},)
    ds = gather_batches(
        parts if len(parts) > 1 else parts[0], n, batch_size, shuffle, seed, drop_remainder
    )
    if cache and not shuffle:
        ds = ds.cache()
    return ds.prefetch(tf.data.AUTOTUNE)
