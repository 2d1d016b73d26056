"""Seeded shuffling of in-memory arrays, identical on every worker.

`fit(x_arrays, shuffle=True)` shuffles with an unseeded `tf.random.shuffle`:
under MultiWorkerMirroredStrategy each worker would draw its own order, so
within an epoch rows repeat and others go missing. `MultiTaskModel.fit`
replaces such arrays by `shuffled_dataset(..., seed=SHUFFLE_SEED)`.
"""

from __future__ import annotations

import inspect
from typing import Any

import keras
import numpy as np
import tensorflow as tf

#: seed of the shuffle `MultiTaskModel.fit` applies under MWMS (same on every worker)
SHUFFLE_SEED = 1337


def _is_arrays(x: Any) -> bool:
    leaves = tf.nest.flatten(x)
    return bool(leaves) and all(
        isinstance(v, (np.ndarray, tf.Tensor, list)) or hasattr(v, "__array__") for v in leaves
    )


def shuffled_dataset(
    x: Any,
    y: Any = None,
    sample_weight: Any = None,
    batch_size: int = 32,
    seed: int = SHUFFLE_SEED,
) -> tf.data.Dataset:
    """(x, y, sample_weight) arrays -> a dataset of global batches reshuffled
    every epoch with a fixed seed (so every worker and a single-process run
    draw the same order).

    Args:
        x: features (array or dict of arrays).
        y: labels (array or dict of arrays), optional.
        sample_weight: optional sample weights.
        batch_size: global batch size.
        seed: shuffle seed.

    Example:
    >>> import numpy as np
    >>> ds = shuffled_dataset(np.arange(6.0)[:, None], np.arange(6.0), batch_size=4)
    >>> [b[0].shape[0] for b in ds]
    [4, 2]
    """
    data = (x,) if y is None else (x, y) if sample_weight is None else (x, y, sample_weight)
    data = tf.nest.map_structure(
        lambda v: v.astype(str) if isinstance(v, np.ndarray) and v.dtype.kind == "O" else v, data
    )
    n = int(tf.nest.flatten(data)[0].shape[0])
    ds = tf.data.Dataset.from_tensor_slices(data)
    ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _split_last(data: tuple, fraction: float) -> tuple[tuple, tuple]:
    """(train, validation): the last `fraction` of the rows is validation, as
    Keras's `validation_split` does."""
    n = int(np.asarray(tf.nest.flatten(data[0])[0]).shape[0])
    cut = int(np.floor(n * (1.0 - fraction)))

    def part(lo: int, hi: int | None) -> tuple:
        return tf.nest.map_structure(lambda v: None if v is None else np.asarray(v)[lo:hi], data)

    return part(0, cut), part(cut, None)


def seeded_arrays(model: keras.Model, x: Any, y: Any, args: tuple, kwargs: dict) -> tuple:
    """`fit` arguments with shuffled arrays replaced by `shuffled_dataset`
    under MultiWorkerMirroredStrategy; unchanged otherwise."""
    from mtl_keras.distribute.cluster import is_multi_worker

    if not is_multi_worker(model.distribute_strategy):
        return x, y, args, kwargs
    bound = inspect.signature(keras.Model.fit).bind_partial(model, x, y, *args, **kwargs)
    params = dict(bound.arguments)
    params.pop("self")
    if params.get("shuffle", True) is not True or not _is_arrays(params.get("x")):
        return x, y, args, kwargs
    if params.get("class_weight") is not None:
        raise ValueError(
            f"{model.name!r}: class_weight with shuffled arrays under "
            "MultiWorkerMirroredStrategy is not supported; pass a tf.data.Dataset "
            "(e.g. mtl_keras.distribute.shuffled_dataset) with per-task sample weights."
        )
    sample_weight = params.pop("sample_weight", None)
    split = params.pop("validation_split", 0.0)
    data = (params.pop("x"), params.pop("y", None), sample_weight)
    if split and params.get("validation_data") is None:
        data, params["validation_data"] = _split_last(data, split)
    params["x"] = shuffled_dataset(*data, batch_size=params.pop("batch_size", None) or 32)
    params["shuffle"] = False
    return params.pop("x"), None, (), params
