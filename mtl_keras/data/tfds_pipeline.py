"""TensorFlow Datasets -> multi-task tf.data pipelines."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import tensorflow as tf

#: Splits below this encoded size are cached in memory when `cache=None`.
AUTO_CACHE_BYTES = 256 * 1024**2


def _get(example: Mapping[str, Any], key: str) -> Any:
    """`"attributes/Smiling"` -> example["attributes"]["Smiling"]."""
    value: Any = example
    for part in key.split("/"):
        if not isinstance(value, Mapping) or part not in value:
            raise KeyError(
                f"Feature {key!r} not found; available at this level: "
                f"{sorted(value) if isinstance(value, Mapping) else type(value).__name__}."
            )
        value = value[part]
    return value


def _as_label(value: Any) -> Any:
    """bool -> float32 (Binary), integers -> int32 (Multiclass), floats -> float32."""
    value = tf.convert_to_tensor(value)
    if value.dtype == tf.bool or value.dtype.is_floating:
        return tf.cast(value, tf.float32)
    if value.dtype.is_integer:
        return tf.cast(value, tf.int32)
    return value


def _select(example: Mapping[str, Any], spec: Any) -> Any:
    if callable(spec):
        return spec(example)
    if isinstance(spec, str):
        return _get(example, spec)
    return {k: _get(example, k) for k in spec}


def _split_bytes(builder: Any, split: str) -> int | None:
    try:
        return int(builder.info.splits[split].num_bytes) or None
    except Exception:  # unknown split size (mock data, sliced split names, ...)
        return None


def from_tfds(
    name: str,
    split: str,
    task_map: Mapping[str, str | Callable[[Mapping[str, Any]], Any]],
    features: str | Sequence[str] | Callable[[Mapping[str, Any]], Any] = "image",
    batch_size: int = 256,
    data_dir: str | None = None,
    shuffle: bool | None = None,
    shuffle_buffer: int = 10_000,
    seed: int | None = None,
    cache: bool | str | None = None,
    drop_remainder: bool = False,
    preprocess: Callable[[Any], Any] | None = None,
    augment: Callable[[Any], Any] | None = None,
    download: bool = False,
    builder_kwargs: Mapping[str, Any] | None = None,
) -> tf.data.Dataset:
    """Loads a TFDS split as `(features, {task: label})` batches.

    Order of operations (the usual tf.data recipe): read (file-level shuffle
    when shuffling) -> decode + select features/labels + `preprocess` in
    parallel -> cache -> shuffle (reshuffled every epoch) -> `augment`
    (random, so after the cache) -> batch -> prefetch.

    Labels: bool features become float32 0/1 (for `Binary` tasks), integers
    int32 (`Multiclass`), floats float32. A callable in `task_map` may return
    NaN/-1 to mark rows unlabelled for its task.

    Args:
        name: TFDS name, e.g. `"celeb_a"` or `"mnist"`.
        split: split (slicing allowed, e.g. `"train[:10%]"`).
        task_map: dict task name -> feature key (nested keys joined by "/",
            e.g. `"attributes/Smiling"`) or `callable(example) -> label`.
        features: model input: a feature key, a list of keys (gives a dict)
            or `callable(example) -> inputs`.
        batch_size: examples per batch.
        data_dir: TFDS data folder (default: TFDS's own, `~/tensorflow_datasets`).
        shuffle: shuffle files and examples; default: True for `train*` splits.
        shuffle_buffer: example shuffle buffer size.
        seed: shuffle seed (file order and example order).
        cache: `True` caches in memory, a string caches to that file prefix,
            `False` never caches; `None` (default) caches in memory when the
            split's encoded size is known and below `AUTO_CACHE_BYTES`
            (decoded images take more room than the encoded size).
        drop_remainder: drop the last incomplete batch (static batch shape).
        preprocess: deterministic `fn(inputs) -> inputs` applied before the
            cache (e.g. scaling images to [0, 1]).
        augment: random `fn(inputs) -> inputs` applied after the cache.
        download: let TFDS download and prepare the data if absent. Off by
            default so that nothing is fetched at run time unexpectedly.
        builder_kwargs: extra arguments of `tfds.builder` (e.g. `config`).

    Example (skipped: needs CelebA prepared in the TFDS data dir, and
    `download=False` means nothing is fetched here):
    >>> ds = from_tfds(  # doctest: +SKIP
    ...     "celeb_a", "train",
    ...     {"smiling": "attributes/Smiling", "male": "attributes/Male"},
    ...     preprocess=lambda img: tf.image.resize(img, (64, 64)) / 255.0,
    ... )
    """
    import tensorflow_datasets as tfds

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
    if not task_map:
        raise ValueError("`task_map` is empty: map at least one task to a feature.")
    if shuffle is None:
        shuffle = split.startswith("train")
    builder = tfds.builder(name, data_dir=data_dir, **dict(builder_kwargs or {}))
    if download:
        builder.download_and_prepare()
    read_config = tfds.ReadConfig(shuffle_seed=seed, try_autocache=False)
    ds = builder.as_dataset(split=split, shuffle_files=shuffle, read_config=read_config)

    def to_pair(example: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        x = _select(example, features)
        if preprocess is not None:
            x = preprocess(x)
        y = {task: _as_label(_select(example, spec)) for task, spec in task_map.items()}
        return x, y

    ds = ds.map(to_pair, num_parallel_calls=tf.data.AUTOTUNE)
    if cache is None:
        size = _split_bytes(builder, split)
        cache = size is not None and size < AUTO_CACHE_BYTES
    if cache is True:
        ds = ds.cache()
    elif isinstance(cache, str):
        ds = ds.cache(cache)
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if augment is not None:
        ds = ds.map(lambda x, y: (augment(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)
