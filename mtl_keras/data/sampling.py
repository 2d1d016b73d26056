"""Mixing heterogeneous data sets (one per task or task group) for `model.fit`."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow as tf

SAMPLERS = ("uniform", "proportional", "annealed")


def _split_element(element: Any) -> tuple[Any, Any, Any]:
    if isinstance(element, tuple) and len(element) in (2, 3):
        return element[0], element[1], element[2] if len(element) == 3 else None
    raise ValueError(
        "Each data set must yield (features, labels) or (features, labels, sample_weight) "
        f"batches; got an element spec {element!r}."
    )


def _label_dict(key: str | tuple[str, ...], labels: Any, what: str) -> dict[str, Any]:
    """Labels as a dict task -> value; a bare tensor is named by its data set key."""
    if isinstance(labels, Mapping):
        return dict(labels)
    if isinstance(key, str):
        return {key: labels}
    if isinstance(labels, (tuple, list)) and len(labels) == len(key):
        return dict(zip(key, labels))
    raise ValueError(
        f"Data set {key!r}: {what} must be a dict task -> value, or match its key "
        "(one tensor for a task-name key, a tuple for a tuple of task names)."
    )


def _fill_value(dtype: tf.DType) -> Any:
    # What `MultiTaskModel` reads as "unlabelled": NaN for floats, -1 for ids.
    if dtype.is_floating:
        return float("nan")
    if dtype.is_integer and not dtype.is_unsigned:
        return -1
    raise ValueError(f"Cannot mark a missing label of dtype {dtype.name}; use float or int labels.")


def _batch_size(x: Any) -> Any:
    return tf.shape(tf.nest.flatten(x)[0])[0]


class TaskSampler:
    """Mixes one data set per task (or task group) into one stream for `fit`.

    Every batch comes from one data set, chosen at random with probability
    `p_i ∝ n_i ** alpha` (`n_i`: size of data set i):

    - `"uniform"`: `alpha = 0`, every data set equally often;
    - `"proportional"`: temperature sampling with the given `alpha`
      (`alpha=1`: proportional to size, as if the data sets were concatenated;
      `alpha=0.5`: square-root sampling, which favours small data sets);
    - `"annealed"`: `alpha` goes linearly from `alpha` (default 1) at the first
      epoch to `alpha_end` (default 0.2) at epoch `epochs - 1`, as in
      Stickland & Murray (2019), "BERT and PALs" (`alpha = 1 - 0.8 (e-1)/(E-1)`).

    All batches get the same structure (so the tf.data element spec is fixed
    and one traced train step serves every source): the label dict holds every
    task of every data set, and a task a data set does not label is filled
    with NaN (float labels) or -1 (integer labels), which `MultiTaskModel`
    masks. If any data set yields sample weights, every batch carries a
    weight dict (ones where a data set has none, zeros for filled tasks).

    What an epoch is: the mixed stream is infinite (each data set is
    repeated; shuffle it yourself, e.g. `from_arrays(..., shuffle=True)`,
    which reshuffles on each repetition), so pass
    `steps_per_epoch=sampler.steps_per_epoch` to `fit`. It defaults to the
    total number of batches of all data sets (one pass over everything in
    expectation when `alpha=1`). The epoch used by `"annealed"` is counted
    from the batches drawn (`step // steps_per_epoch`), so it follows
    `fit`'s epochs when `fit` is given the same `steps_per_epoch` and the
    stream is consumed by one `fit` call.

    Args:
        datasets: dict key -> finite batched `tf.data.Dataset` of
            `(features, labels[, sample_weight])`. The key is a task name or a
            tuple of task names; labels are a dict task -> label, or a bare
            tensor (tuple) named by the key. Features must have the same
            structure and dtypes in every data set.
        sampler: `"uniform"`, `"proportional"` or `"annealed"`.
        alpha: the exponent of `"proportional"`; the starting exponent of
            `"annealed"`.
        alpha_end: final exponent of `"annealed"`.
        epochs: number of epochs of the annealing schedule (`"annealed"` only).
        sizes: optional dict key -> number of examples; by default, the
            number of batches of each data set (its cardinality).
        steps_per_epoch: batches per epoch (default: total batches).
        seed: seed of the data set choice (stateless, so the sequence of
            choices is reproducible).

    Example:
    >>> import numpy as np
    >>> from mtl_keras.data import from_arrays
    >>> x = np.zeros((8, 2), "float32")
    >>> s = TaskSampler({"a": from_arrays(x, {"a": np.ones(8)}, batch_size=4),
    ...                  "b": from_arrays(x, {"b": np.zeros(8, "int32")}, batch_size=4)},
    ...                 sampler="uniform", seed=0)
    >>> s.steps_per_epoch
    4
    >>> _, y = next(iter(s.dataset))
    >>> sorted(y)
    ['a', 'b']
    """

    def __init__(
        self,
        datasets: Mapping[str | tuple[str, ...], tf.data.Dataset],
        sampler: str = "proportional",
        alpha: float = 1.0,
        alpha_end: float = 0.2,
        epochs: int | None = None,
        sizes: Mapping[Any, float] | None = None,
        steps_per_epoch: int | None = None,
        seed: int | None = None,
    ) -> None:
        if sampler not in SAMPLERS:
            raise ValueError(f"`sampler` must be one of {SAMPLERS}, got {sampler!r}.")
        if not datasets:
            raise ValueError("`datasets` is empty.")
        for name, value in (("alpha", alpha), ("alpha_end", alpha_end)):
            if not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise ValueError(f"`{name}` must be a finite number, got {value!r}.")
        if sampler == "annealed":
            if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
                raise ValueError("`sampler='annealed'` needs `epochs` (a positive integer).")
        self.keys = list(datasets)
        self.sampler = sampler
        self.alpha = 0.0 if sampler == "uniform" else float(alpha)
        self.alpha_end = float(alpha_end) if sampler == "annealed" else self.alpha
        self.epochs = epochs
        self.seed = int(np.random.randint(2**31 - 1)) if seed is None else int(seed)

        batches = {}
        for key, ds in datasets.items():
            n = int(ds.cardinality())
            if n < 0 and (steps_per_epoch is None or sizes is None):
                raise ValueError(
                    f"Data set {key!r} has unknown or infinite cardinality; pass `sizes` "
                    "and `steps_per_epoch`."
                )
            batches[key] = n
        if sizes is None:
            sizes = batches
        missing = [k for k in self.keys if k not in sizes]
        if missing:
            raise ValueError(f"`sizes` lacks data sets {missing}.")
        self.sizes = np.array([float(sizes[k]) for k in self.keys])
        if np.any(self.sizes <= 0):
            raise ValueError(
                f"Data set sizes must be positive, got {dict(zip(self.keys, self.sizes))}."
            )
        self.steps_per_epoch = int(steps_per_epoch or sum(batches.values()))
        if self.steps_per_epoch < 1:
            raise ValueError(f"`steps_per_epoch` must be >= 1, got {self.steps_per_epoch}.")
        self.dataset = self._build(datasets)

    # ------------------------------------------------------------ schedule
    def alpha_at(self, epoch: int) -> float:
        """The sampling exponent used during `epoch` (0-based)."""
        if self.sampler != "annealed" or self.epochs == 1:
            return self.alpha
        frac = min(max(epoch, 0) / (self.epochs - 1), 1.0)
        return self.alpha + (self.alpha_end - self.alpha) * frac

    def probabilities(self, epoch: int = 0) -> dict[Any, float]:
        """Data set key -> probability of drawing a batch from it during `epoch`."""
        logits = self.alpha_at(epoch) * np.log(self.sizes)
        p = np.exp(logits - logits.max())
        return dict(zip(self.keys, (p / p.sum()).tolist()))

    def _choices(self) -> tf.data.Dataset:
        log_sizes = tf.constant(np.log(self.sizes), tf.float32)
        steps, seed = self.steps_per_epoch, self.seed
        start, end = self.alpha, self.alpha_end
        span = float(max((self.epochs or 1) - 1, 1))

        def choose(step: Any) -> Any:
            epoch = tf.cast(step // steps, tf.float32)
            alpha = start + (end - start) * tf.minimum(epoch / span, 1.0)
            logits = tf.reshape(alpha * log_sizes, [1, -1])
            # Stateless: the choice of step k depends only on (seed, k).
            sample = tf.random.stateless_categorical(
                logits, 1, seed=tf.stack([tf.constant(seed, tf.int64), step])
            )
            return tf.cast(sample[0, 0], tf.int64)

        return tf.data.Dataset.counter().map(choose)

    # ------------------------------------------------------------ datasets
    def _build(self, datasets: Mapping[Any, tf.data.Dataset]) -> tf.data.Dataset:
        parts = {k: _split_element(ds.element_spec) for k, ds in datasets.items()}
        label_specs: dict[str, tf.TensorSpec] = {}
        for key, (_, y_spec, _) in parts.items():
            for task, spec in _label_dict(key, y_spec, "labels").items():
                spec = tf.TensorSpec(
                    spec.shape, tf.float32 if spec.dtype == tf.bool else spec.dtype
                )
                if task in label_specs and label_specs[task].dtype != spec.dtype:
                    raise ValueError(
                        f"Task {task!r} has labels of dtype {label_specs[task].dtype.name} "
                        f"in one data set and {spec.dtype.name} in another."
                    )
                label_specs.setdefault(task, spec)
        tasks = list(label_specs)
        for task, spec in label_specs.items():
            if not spec.shape[1:].is_fully_defined():
                raise ValueError(
                    f"Task {task!r}: labels need a static shape beyond the batch axis "
                    f"to be filled where absent, got {spec.shape}."
                )
            _fill_value(spec.dtype)
        with_weights = any(w is not None for _, _, w in parts.values())

        def standardize(key: Any) -> Any:
            def fn(*element: Any) -> Any:
                x, y, w = element[0], element[1], element[2] if len(element) == 3 else None
                y = _label_dict(key, y, "labels")
                w = {} if w is None else _label_dict(key, w, "sample weights")
                n = _batch_size(x)
                labels, weights = {}, {}
                for task in tasks:
                    spec = label_specs[task]
                    shape = tf.concat([[n], tf.constant(spec.shape[1:].as_list(), tf.int32)], 0)
                    if task in y:
                        labels[task] = tf.cast(y[task], spec.dtype)
                        weights[task] = (
                            tf.cast(tf.reshape(w[task], [-1]), tf.float32)
                            if task in w
                            else tf.ones([n], tf.float32)
                        )
                    else:
                        labels[task] = tf.fill(
                            shape, tf.constant(_fill_value(spec.dtype), spec.dtype)
                        )
                        weights[task] = tf.zeros([n], tf.float32)
                return (x, labels, weights) if with_weights else (x, labels)

            return fn

        sources = [
            datasets[k].map(standardize(k), num_parallel_calls=tf.data.AUTOTUNE).repeat()
            for k in self.keys
        ]
        mixed = tf.data.Dataset.choose_from_datasets(sources, self._choices())
        return mixed.prefetch(tf.data.AUTOTUNE)


def sample_tasks(
    datasets: Mapping[str | tuple[str, ...], tf.data.Dataset],
    sampler: str = "proportional",
    **kwargs: Any,
) -> TaskSampler:
    """Shorthand for `TaskSampler(datasets, sampler, **kwargs)`.

    Args:
        datasets: dict task name (or tuple of names) -> batched data set.
        sampler: `"uniform"`, `"proportional"` or `"annealed"`.
        **kwargs: see `TaskSampler` (`alpha`, `epochs`, `steps_per_epoch`, `seed`, ...).

    Example:
    >>> from mtl_keras.data import from_arrays
    >>> a = {"a": x["a"], "b": x["b"]}  # `model`, `x`, `y`: see conftest.py
    >>> datasets = {"click": from_arrays(a, {"click": y["click"]}, batch_size=4),
    ...             "dwell": from_arrays(a, {"dwell": y["dwell"]}, batch_size=8)}
    >>> s = sample_tasks(datasets, "proportional", alpha=0.5)
    >>> h = model.fit(s.dataset, steps_per_epoch=s.steps_per_epoch, epochs=1, verbose=0)
    >>> len(h.history["loss"])
    1
    """
    return TaskSampler(datasets, sampler, **kwargs)


__all__: Sequence[str] = ["SAMPLERS", "TaskSampler", "sample_tasks"]
