"""Per-task feature attributions on raw features: integrated gradients.

Integrated gradients (Sundararajan et al., 2017) attribute `f(x) - f(b)` to
the inputs along the straight path from a baseline `b` to `x`. Raw features
are not all differentiable, so the path runs where they become continuous:

- numeric inputs (float arrays: numeric columns, pixels) are interpolated as
  they are, one attribution per value (per column, per pixel); columns a
  `TabularEncoder` log-transforms are interpolated in that log space;
- categorical inputs and token ids (strings/integers) are interpolated in the
  space of the `keras.layers.Embedding` they feed, from the embedding of the
  baseline id (index 0: the out-of-vocabulary bucket of Keras lookups and the
  padding id of token sequences; or a zero vector) to the embedding of the
  actual id; the attribution of a column (or token) is the sum over its
  embedding dimensions.

Completeness: for every row, the attributions summed over all features equal
`f(x) - f(b)` up to the integration error of the Riemann sum (midpoint rule,
`steps` points); `Attributions.completeness_gap` reports it per row and
`completeness_error` as the largest gap relative to the mean |f(x) - f(b)|.
ReLU kinks and saturating sigmoids make that error first order in 1/steps;
with 128 steps it stays below 2 % in the tests (tabular, tokens, pixels).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from mtl_keras.layers.tabular_encoder import TabularEncoder


@dataclasses.dataclass
class Attributions:
    """Integrated-gradient attributions of several tasks for the same rows.

    Attributes:
        values: task -> feature -> array. A feature is an input key (numeric
            input: the input's own shape, e.g. `(n,)` per column, `(n, d)`
            for a matrix, `(n, H, W, C)` per pixel) or a categorical column /
            token sequence named after its embedding (`(n,)` or `(n, T)`).
        outputs: task -> `f(x)` per row (the explained output unit).
        baseline_outputs: task -> `f(b)` per row.
    """

    values: dict[str, dict[str, np.ndarray]]
    outputs: dict[str, np.ndarray]
    baseline_outputs: dict[str, np.ndarray]

    def total(self, task: str) -> np.ndarray:
        """Sum of all attributions per row for `task`."""
        return sum(v.reshape(len(v), -1).sum(axis=1) for v in self.values[task].values())

    def completeness_gap(self, task: str) -> np.ndarray:
        """|sum of attributions - (f(x) - f(b))| per row."""
        delta = self.outputs[task] - self.baseline_outputs[task]
        return np.abs(self.total(task) - delta)

    def completeness_error(self, task: str) -> float:
        """Largest completeness gap relative to the mean |f(x) - f(b)| over rows."""
        delta = np.abs(self.outputs[task] - self.baseline_outputs[task])
        return float(self.completeness_gap(task).max() / max(float(delta.mean()), 1e-12))

    def per_feature(self, task: str) -> dict[str, np.ndarray]:
        """task's attribution per row and feature (positions summed): `(n,)` each."""
        return {f: v.reshape(len(v), -1).sum(axis=1) for f, v in self.values[task].items()}


def _input_names(model: keras.Model) -> list[str]:
    return [t.name for t in model.inputs]


def feature_dict(model: keras.Model, x: Any) -> dict[str, np.ndarray]:
    """`x` (a dict, a list in input order, or one array) as input name -> array."""
    names = _input_names(model)
    if isinstance(x, dict):
        missing = [n for n in names if n not in x]
        if missing:
            raise ValueError(f"Inputs {missing} of model {model.name!r} are missing from `x`.")
        return {n: np.asarray(x[n]) for n in names}
    if isinstance(x, (list, tuple)):
        if len(x) != len(names):
            raise ValueError(f"Model {model.name!r} has {len(names)} inputs {names}, got {len(x)}.")
        return {n: np.asarray(v) for n, v in zip(names, x)}
    if len(names) != 1:
        raise ValueError(f"Model {model.name!r} has inputs {names}: pass a dict.")
    return {names[0]: np.asarray(x)}


def pack_inputs(model: keras.Model, values: dict[str, Any]) -> Any:
    """Input name -> value, packed in the structure of `model.input`."""
    struct = model.input
    if isinstance(struct, dict):
        return {k: values[t.name] for k, t in struct.items()}
    if isinstance(struct, (list, tuple)):
        return [values[t.name] for t in struct]
    return values[struct.name]


def _embeddings(model: keras.Model) -> dict[int, tuple[keras.layers.Embedding, str]]:
    """Every Embedding layer (nested ones included) and the feature it encodes."""
    feature_of: dict[int, str] = {}
    for layer in model._flatten_layers():
        if isinstance(layer, TabularEncoder):
            for name, emb in layer.embeddings.items():
                feature_of[id(emb)] = name
    return {
        id(layer): (layer, feature_of.get(id(layer), layer.name))
        for layer in model._flatten_layers()
        if isinstance(layer, keras.layers.Embedding)
    }


@contextlib.contextmanager
def _patched_embeddings(layers: list[Any], make: Callable) -> Iterator[None]:
    """Temporarily replaces each Embedding's `call` by `make(layer, original)`."""
    for layer in layers:
        object.__setattr__(layer, "call", make(layer, type(layer).call.__get__(layer)))
    try:
        yield
    finally:
        for layer in layers:
            object.__delattr__(layer, "call")


def _mean_embeddings(
    model: keras.Model,
    data: dict[str, np.ndarray],
    embeddings: dict[int, tuple[Any, str]],
    batch_size: int,
) -> dict[tuple[int, int], Any]:
    """Mean output of every per-row embedding call `(batch, dim)` over `data`."""
    layers = [layer for layer, _ in embeddings.values()]
    sums: dict[tuple[int, int], Any] = {}
    counts: dict[tuple[int, int], int] = {}

    def make(layer: Any, original: Callable) -> Callable:
        calls = [0]

        def call(ids: Any, *args: Any, **kwargs: Any) -> Any:
            out = original(ids, *args, **kwargs)
            key = (id(layer), calls[0])
            calls[0] += 1
            if out.shape.rank == 2:  # one category per row; tokens keep id 0
                sums[key] = sums.get(key, 0.0) + tf.reduce_sum(out, axis=0)
                counts[key] = counts.get(key, 0) + int(out.shape[0])
            return out

        return call

    n = len(next(iter(data.values())))
    for start in range(0, n, batch_size):
        rows = {k: v[start : start + batch_size] for k, v in data.items()}
        tensors = {k: _tensor(v) for k, v in rows.items()}
        with _patched_embeddings(layers, make):
            model(pack_inputs(model, tensors), training=False)
    return {key: sums[key] / counts[key] for key in sums}


def _tensor(value: np.ndarray) -> Any:
    if value.dtype.kind in "USO":
        return tf.constant(value.astype(str))
    if value.dtype.kind == "f":
        return tf.constant(value, tf.float32)
    return tf.constant(value)


def _log_features(model: keras.Model) -> set[str]:
    """Numeric features a TabularEncoder log-transforms (sign(x) * log1p(|x|))."""
    return {
        name
        for layer in model._flatten_layers()
        if isinstance(layer, TabularEncoder)
        for name in layer.log_features
    }


def _signed_log(x: Any) -> Any:
    return tf.sign(x) * tf.math.log1p(tf.abs(x))


def _signed_exp(t: Any) -> Any:
    return tf.sign(t) * tf.math.expm1(tf.abs(t))


def _numeric_baseline(model: keras.Model, name: str, value: np.ndarray) -> np.ndarray:
    """The value a TabularEncoder standardizes to 0 (the training mean), else 0."""
    for layer in model._flatten_layers():
        if isinstance(layer, TabularEncoder) and name in layer.numeric_stats:
            mean = layer.numeric_stats[name][0]
            if name in layer.log_features:  # inverse of sign(x) * log1p(|x|)
                mean = float(np.sign(mean) * np.expm1(abs(mean)))
            return np.full_like(value, mean, dtype="float32")
    return np.zeros_like(value, dtype="float32")


def _task_scalar(task: str, out: Any, index: Any) -> Any:
    if out.shape.rank == 1:
        return out
    if out.shape.rank != 2:
        raise ValueError(
            f"integrated_gradients explains one value per row; task {task!r} outputs shape "
            f"{tuple(out.shape)} (sequence/box outputs are not supported)."
        )
    return tf.gather(out, index, axis=1, batch_dims=1)


def integrated_gradients(
    model: keras.Model,
    x: Any,
    tasks: list[str] | None = None,
    *,
    baseline: dict[str, Any] | None = None,
    categorical_baseline: str = "mean",
    reference: Any = None,
    steps: int = 64,
    batch_size: int = 32,
    output_index: dict[str, int] | None = None,
) -> Attributions:
    """Per-task integrated gradients on raw features.

    Args:
        model: a functional (multi-task) model; outputs a dict task -> tensor.
        x: raw inputs as the model takes them (dict of 1-D arrays for a
            `TabularEncoder`, arrays for numeric/image/token inputs).
        tasks: tasks to explain (default: all outputs).
        baseline: optional dict numeric input -> baseline value(s); default
            the training mean known to a `TabularEncoder`, else 0.
        categorical_baseline: "mean" (default: a per-row categorical column
            starts from its mean embedding over the `reference` rows, the
            categorical analogue of the numeric mean, so an unused column
            gets ~0; token sequences start from the padding id 0), "oov"
            (embedding of id 0: the unknown-category bucket of Keras lookups,
            the padding id of sequences) or "zeros" (a zero embedding).
        reference: rows whose mean embeddings form the "mean" baseline
            (default `x`; pass a few hundred representative rows when
            explaining a handful).
        steps: Riemann-sum points (midpoint rule); the completeness gap
            shrinks roughly as 1/steps**2.
        batch_size: rows per integration batch (each expands to `steps` rows).
        output_index: task -> output unit to explain when a task has several
            units (default: the unit predicted for each row; 0 if one unit).

    Returns:
        `Attributions` (values per task and feature, f(x), f(baseline)).

    Example:
    >>> attr = integrated_gradients(model, x, steps=64)
    >>> sorted(attr.values["click"])
    ['a', 'b']
    >>> bool(attr.completeness_error("click") < 0.05)
    True
    """
    if categorical_baseline not in ("mean", "oov", "zeros"):
        raise ValueError(
            f"categorical_baseline must be 'mean', 'oov' or 'zeros', got {categorical_baseline!r}."
        )
    data = feature_dict(model, x)
    outputs_names = list(getattr(model, "task_names", None) or model.output_names)
    tasks = list(tasks or outputs_names)
    unknown = sorted(set(tasks) - set(outputs_names))
    if unknown:
        raise ValueError(f"Unknown tasks {unknown}; the model outputs {outputs_names}.")
    numeric = [k for k, v in data.items() if v.dtype.kind == "f"]
    base = {}
    for k in numeric:
        given = (baseline or {}).get(k)
        base[k] = (
            _numeric_baseline(model, k, data[k])
            if given is None
            else np.broadcast_to(np.asarray(given, "float32"), data[k].shape)
        )
    embeddings = _embeddings(model)
    means = None
    if categorical_baseline == "mean":
        ref = data if reference is None else feature_dict(model, reference)
        means = _mean_embeddings(model, ref, embeddings, batch_size * steps)
    n = len(next(iter(data.values())))
    results: dict[str, dict[str, list[np.ndarray]]] = {t: {} for t in tasks}
    f_x: dict[str, list[np.ndarray]] = {t: [] for t in tasks}
    f_b: dict[str, list[np.ndarray]] = {t: [] for t in tasks}
    for start in range(0, n, batch_size):
        rows = {k: v[start : start + batch_size] for k, v in data.items()}
        rows_base = {k: base[k][start : start + batch_size] for k in numeric}
        values, fx, fb = _explain_rows(
            model,
            rows,
            rows_base,
            tasks,
            embeddings,
            steps,
            categorical_baseline if means is None else means,
            output_index,
        )
        for t in tasks:
            f_x[t].append(fx[t])
            f_b[t].append(fb[t])
            for f, v in values[t].items():
                results[t].setdefault(f, []).append(v)
    return Attributions(
        values={t: {f: np.concatenate(v) for f, v in results[t].items()} for t in tasks},
        outputs={t: np.concatenate(v) for t, v in f_x.items()},
        baseline_outputs={t: np.concatenate(v) for t, v in f_b.items()},
    )


def _explain_rows(
    model: keras.Model,
    rows: dict[str, np.ndarray],
    rows_base: dict[str, np.ndarray],
    tasks: list[str],
    embeddings: dict[int, tuple[Any, str]],
    steps: int,
    means: dict[tuple[int, int], Any] | str | None,
    output_index: dict[str, int] | None,
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Integrated gradients for one batch of rows (see `integrated_gradients`)."""
    numeric = list(rows_base)
    log_features = _log_features(model)
    emb_layers = [layer for layer, _ in embeddings.values()]
    alphas = (np.arange(steps, dtype="float32") + 0.5) / steps
    results: dict[str, dict[str, np.ndarray]] = {t: {} for t in tasks}
    f_x: dict[str, np.ndarray] = {}
    f_b: dict[str, np.ndarray] = {}
    b = len(next(iter(rows.values())))
    tensors = {k: _tensor(v) for k, v in rows.items()}
    # 1) record every embedding call's output at x and at the baseline id.
    seen: dict[int, list[tuple[Any, Any]]] = {id(layer): [] for layer in emb_layers}

    def record(layer: Any, original: Callable) -> Callable:
        def call(ids: Any, *args: Any, **kwargs: Any) -> Any:
            out = original(ids, *args, **kwargs)
            key = (id(layer), len(seen[id(layer)]))
            if isinstance(means, dict) and key in means:
                base_out = tf.broadcast_to(means[key], tf.shape(out))
            elif means == "zeros":
                base_out = tf.zeros_like(out)
            else:  # "oov", and token sequences under "mean"
                base_out = original(tf.zeros_like(ids), *args, **kwargs)
            seen[id(layer)].append((out, base_out))
            return out

        return call

    with _patched_embeddings(emb_layers, record):
        out_x = model(pack_inputs(model, tensors), training=False)
    index = {}
    for t in tasks:
        o = out_x[t]
        if o.shape.rank == 2:
            chosen = (output_index or {}).get(t)
            if chosen is None:
                chosen = tf.argmax(o, axis=1) if o.shape[1] > 1 else tf.zeros([b], tf.int64)
            else:
                chosen = tf.fill([b], tf.cast(chosen, tf.int64))
            index[t] = chosen
        else:
            index[t] = None
        f_x[t] = _task_scalar(t, o, index[t]).numpy()
    used = [lid for lid, calls in seen.items() if calls]

    # 2) f(baseline): numeric inputs at the baseline, embeddings at the baseline id.
    def replay(which: Callable[[int, int], Any]) -> Callable:
        def make(layer: Any, original: Callable) -> Callable:
            counter = [0]

            def call(ids: Any, *args: Any, **kwargs: Any) -> Any:
                i = counter[0]
                counter[0] += 1
                return which(id(layer), i)

            return call

        return make

    base_tensors = dict(tensors)
    for k in numeric:
        base_tensors[k] = tf.constant(rows_base[k], tf.float32)
    with _patched_embeddings(emb_layers, replay(lambda lid, i: seen[lid][i][1])):
        out_b = model(pack_inputs(model, base_tensors), training=False)
    for t in tasks:
        f_b[t] = _task_scalar(t, out_b[t], index[t]).numpy()

    # 3) gradients along the path, all steps of these rows in one batch.
    alpha = tf.constant(np.tile(alphas, b))  # row-major: row0's steps, row1's ...

    def along(start_value: Any, end_value: Any) -> Any:
        start_rep = tf.repeat(start_value, steps, axis=0)
        end_rep = tf.repeat(end_value, steps, axis=0)
        a = tf.reshape(alpha, [-1] + [1] * (len(end_rep.shape) - 1))
        return start_rep + a * (end_rep - start_rep)

    path = {k: tf.repeat(v, steps, axis=0) for k, v in tensors.items()}
    emb_path: dict[tuple[int, int], Any] = {}
    with tf.GradientTape(persistent=len(tasks) > 1) as tape:
        # Heavy-tailed features the encoder log-transforms are interpolated in
        # log space (where the model sees them linearly); a raw-space path
        # would spend almost all its change in its first steps.
        watched_numeric = {}
        for k in numeric:
            if k in log_features:
                t = along(_signed_log(base_tensors[k]), _signed_log(tensors[k]))
                tape.watch(t)
                path[k] = _signed_exp(t)
            else:
                t = along(base_tensors[k], tensors[k])
                tape.watch(t)
                path[k] = t
            watched_numeric[k] = t
        for lid in used:
            for i, (out, base_out) in enumerate(seen[lid]):
                emb_path[(lid, i)] = along(base_out, out)
                tape.watch(emb_path[(lid, i)])
        with _patched_embeddings(emb_layers, replay(lambda lid, i: emb_path[(lid, i)])):
            out_path = model(pack_inputs(model, path), training=False)
        scalars = {
            t: tf.reduce_sum(
                _task_scalar(
                    t,
                    out_path[t],
                    None if index[t] is None else tf.repeat(index[t], steps, axis=0),
                )
            )
            for t in tasks
        }
    watched = [watched_numeric[k] for k in numeric] + list(emb_path.values())
    for t in tasks:
        grads = tape.gradient(scalars[t], watched)
        grads = [tf.zeros_like(w) if g is None else g for w, g in zip(watched, grads)]
        mean = [tf.reduce_mean(tf.reshape(g, [b, steps, *g.shape[1:]]), axis=1) for g in grads]
        for k, g in zip(numeric, mean):
            if k in log_features:
                span = _signed_log(tensors[k]) - _signed_log(base_tensors[k])
            else:
                span = tensors[k] - base_tensors[k]
            value = (span * g).numpy()
            results[t][k] = value
        for (lid, i), g in zip(emb_path, mean[len(numeric) :]):
            out, base_out = seen[lid][i]
            value = tf.reduce_sum((out - base_out) * g, axis=-1).numpy()
            name = embeddings[lid][1] + ("" if i == 0 else f"#{i}")
            results[t][name] = value
    del tape
    return results, f_x, f_b
