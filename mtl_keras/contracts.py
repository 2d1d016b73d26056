"""Input contracts: features by name, labels per task, masks, non-finite values.

`MultiTaskModel.fit/evaluate/predict` pass their data through here before
Keras sees it, and its train/test steps count contract violations that can
only be seen in the data stream (tf.data, any execution mode, XLA):

- features are matched **by name** to the model's inputs: a missing or extra
  feature raises `FeatureError` listing expected and given names; a value of
  the wrong kind (strings for a numeric input, 2.5 for an integer id) names
  the feature. A pandas DataFrame is accepted directly (pandas 3 string
  columns included).
- labels: keys must be tasks, lengths must match the features, string labels
  are refused with the encoding hint, and every value must be valid for its
  task or a missing marker (`Task.check_labels`): otherwise `LabelError`
  naming the task. Invalid labels never reach the loss.
- `sample_weight={task: mask}`: tasks not given get weight 1; a mask of the
  wrong shape raises naming the task.
- non-finite features, task losses or gradients during training: the batch
  is never applied, and training stops with `NonFiniteError` naming the
  feature or task (`compile(on_nonfinite="raise")`, the default), or the
  batch is skipped, counted, warned about and logged as `nonfinite_skipped`
  (`on_nonfinite="skip"`). Checked on the values themselves, so it does not
  depend on TF_ENABLE_ONEDNN_OPTS (oneDNN can turn NaN into 0 at a ReLU).
  Features that legitimately carry NaN (a layer imputes them) can be listed
  in `compile(allow_nonfinite_features=[...])`. A batch that is not applied
  leaves no trace: weights, optimizer slots and step count, the strategy's
  state and BatchNorm statistics are put back (`step_state`, `apply_if`),
  under tf.distribute too.
- non-finite features in `evaluate`/validation and `predict`: the same
  `NonFiniteError` naming the feature; with "skip" an evaluation batch is
  left out of the metrics (warned); `predict` always raises (a prediction
  cannot be skipped).

Example:
>>> import keras, numpy as np
>>> from mtl_keras import Binary, MultiTaskModel
>>> inputs = {"a": keras.Input((), name="a"), "b": keras.Input((), name="b")}
>>> h = keras.layers.Concatenate()([keras.layers.Reshape((1,))(v) for v in inputs.values()])
>>> model = MultiTaskModel(inputs, {"y": Binary("y").head(h)}, tasks=[Binary("y")])
>>> model.predict({"a": np.zeros(2), "c": np.zeros(2)})  # doctest: +ELLIPSIS
Traceback (most recent call last):
mtl_keras.contracts.FeatureError: predict: features are matched by name; expected features ['a', 'b'], got ['a', 'c'] ...
"""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from mtl_keras import finite

logger = logging.getLogger(__name__)

ON_NONFINITE = ("raise", "skip")


class InputContractError(ValueError):
    """Data given to a multi-task model breaks its input contract."""


class FeatureError(InputContractError):
    """Features missing, extra, or of the wrong kind (names the feature)."""


class LabelError(InputContractError):
    """Labels of a task that are neither valid nor a missing marker (names the task)."""


class NonFiniteError(InputContractError):
    """NaN/Inf in features, task losses or gradients during training."""


# --------------------------------------------------------------- dtype kinds
def _kind(dtype: Any) -> str:
    """'string', 'int', 'float', 'bool' or 'other' for numpy/tf/keras dtypes."""
    if isinstance(dtype, np.dtype):
        return {"U": "string", "S": "string", "O": "string", "i": "int", "u": "int"}.get(
            dtype.kind, {"f": "float", "b": "bool"}.get(dtype.kind, "other")
        )
    name = str(getattr(dtype, "name", dtype))
    if name == "string":
        return "string"
    if name == "bool":
        return "bool"
    if "int" in name:
        return "int"
    if "float" in name or name == "bfloat16":
        return "float"
    return "other"


def string_labels_error(task: str, dtype: Any) -> LabelError:
    """The one message for labels given as strings (NumPy arrays or DataFrame columns)."""
    return LabelError(
        f"Labels of task {task!r} have dtype {dtype}; labels must be numeric (encode class "
        "names as integer ids first, e.g. with `frame[col].astype('category').cat.codes`, "
        "which gives -1 for missing)."
    )


# ------------------------------------------------------------------ features
def input_signature(model: Any) -> tuple[str, dict[str, Any]]:
    """(structure kind, ordered dict input name -> expected dtype) of a functional model."""
    struct = model.input
    if isinstance(struct, Mapping):
        return "dict", {k: v.dtype for k, v in struct.items()}
    if isinstance(struct, (list, tuple)):
        return "list", {t.name: t.dtype for t in struct}
    return "single", {struct.name: struct.dtype}


def _is_dataframe(x: Any) -> bool:
    return type(x).__name__ == "DataFrame" and hasattr(x, "columns")


def _check_names(expected: Sequence[str], given: Sequence[str], where: str) -> None:
    missing = [n for n in expected if n not in given]
    extra = [n for n in given if n not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if extra:
            parts.append(f"not inputs of the model {extra}")
        raise FeatureError(
            f"{where}: features are matched by name; expected features {list(expected)}, "
            f"got {sorted(given)} ({'; '.join(parts)})."
        )


def _convert_feature(name: str, value: Any, expected: Any, where: str) -> Any:
    """Checks one feature array against its input dtype; returns it ready for Keras."""
    want = _kind(expected)
    if isinstance(value, (tf.Tensor, tf.Variable)) or keras.ops.is_tensor(value):
        got = _kind(value.dtype)
        if want == got or (want == "float" and got in ("int", "bool")) or want == "other":
            return value
        if want == "int" and got == "bool":
            return value
        raise FeatureError(
            f"{where}: feature {name!r} expects {expected} values, got a {value.dtype} tensor."
        )
    if not isinstance(value, np.ndarray):
        value = np.asarray(value)
    got = _kind(value.dtype)
    if want == "string":
        if got != "string":
            raise FeatureError(
                f"{where}: feature {name!r} expects strings, got {value.dtype} values."
            )
        return tf.constant(value.astype(str) if value.dtype.kind == "O" else value)
    if got == "string":
        raise FeatureError(
            f"{where}: feature {name!r} expects {expected} values, got strings "
            f"(dtype {value.dtype}); encode it or declare it as a string input."
        )
    if want == "int" and got == "float":
        bad = finite.nonfinite_mask(value) | (value != np.floor(np.nan_to_num(value)))
        if bad.any():
            raise FeatureError(
                f"{where}: feature {name!r} expects integer ids ({expected}), got {value.dtype} "
                f"values such as {value[bad].reshape(-1)[:3].tolist()}."
            )
        return value.astype(str(expected))
    return value


def _frame_features(frame: Any, names: dict[str, Any], where: str) -> dict[str, Any]:
    """DataFrame -> dict name -> array typed for each input (strings, ids, floats)."""
    import pandas as pd

    _check_names(list(names), [str(c) for c in frame.columns], where)
    out = {}
    for name, expected in names.items():
        column = frame[name]
        numeric = pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)
        want = _kind(expected)
        if want == "string":
            if numeric:
                raise FeatureError(
                    f"{where}: feature {name!r} expects strings, got a {column.dtype} column."
                )
            out[name] = column.astype(object).where(column.notna(), "").to_numpy().astype(str)
        elif not numeric:
            raise FeatureError(
                f"{where}: feature {name!r} expects {expected} values, got a {column.dtype} "
                "column (strings?); encode it or declare it as a string input."
            )
        elif want == "int":
            if column.isna().any():
                raise FeatureError(
                    f"{where}: feature {name!r} expects integer ids ({expected}) but has "
                    f"{int(column.isna().sum())} missing values."
                )
            out[name] = column.to_numpy(dtype="float64")
        else:
            out[name] = column.to_numpy(dtype="float32", na_value=np.nan)
    return out


def _rows(value: Any) -> int | None:
    shape = getattr(value, "shape", None)
    if shape is None or len(shape) == 0:
        return None
    return None if shape[0] is None else int(shape[0])


def prepare_features(model: Any, x: Any, where: str) -> tuple[Any, int | None]:
    """Matches `x` to the model's inputs by name; returns (x for Keras, rows or None).

    Args:
        model: a functional `MultiTaskModel`.
        x: a dict name -> array, a DataFrame, an array/tensor, a list of
            arrays, or a `tf.data.Dataset` (checked on its element spec).
        where: "fit", "evaluate", ... for messages.

    Example:
    >>> from mtl_keras import Regression, builders
    >>> model = builders.shared_bottom({"age": keras.Input((1,), name="age")},
    ...                                [Regression("y")], trunk_units=(4,))
    >>> prepare_features(model, {"age": np.ones(3)}, "predict")
    ({'age': array([1., 1., 1.])}, 3)
    """
    if x is None:
        return x, None
    kind, names = input_signature(model)
    if isinstance(x, tf.data.Dataset):
        _check_dataset_features(model, x.element_spec, kind, names, where)
        return x, None
    if _is_dataframe(x):
        if kind == "single" and _kind(next(iter(names.values()))) == "float":
            # One matrix input: columns in frame order (a matrix has no names).
            try:
                matrix = x.to_numpy(dtype="float32", na_value=np.nan)
            except (TypeError, ValueError) as err:
                raise FeatureError(
                    f"{where}: this model takes one numeric matrix; the DataFrame has "
                    f"non-numeric columns {[c for c in x.columns if x[c].dtype.kind not in 'biuf']}."
                ) from err
            width = model.input.shape[-1]
            if width is not None and matrix.shape[1] != width:
                raise FeatureError(
                    f"{where}: the model's input has {width} features, the DataFrame "
                    f"{matrix.shape[1]} columns {list(x.columns)}."
                )
            return matrix, len(matrix)
        x = _frame_features(x, names, where)
    if isinstance(x, Mapping):
        if kind == "single" and len(x) != 1:
            _check_names(list(names), list(x), where)
        _check_names(list(names), [str(k) for k in x], where)
        converted = {n: _convert_feature(n, x[n], names[n], where) for n in names}
        sizes = {n: _rows(v) for n, v in converted.items()}
        known = {n: s for n, s in sizes.items() if s is not None}
        if len(set(known.values())) > 1:
            raise FeatureError(f"{where}: features have different numbers of rows: {known}.")
        rows = next(iter(known.values()), None)
        if kind == "dict":
            return converted, rows
        if kind == "list":
            return [converted[n] for n in names], rows
        return converted[next(iter(names))], rows
    if isinstance(x, (list, tuple)) and kind == "list":
        if len(x) != len(names):
            raise FeatureError(
                f"{where}: the model has {len(names)} inputs {list(names)}, got {len(x)} arrays; "
                "pass a dict keyed by input name."
            )
        arrays = [_convert_feature(n, v, names[n], where) for n, v in zip(names, x, strict=True)]
        return arrays, _rows(arrays[0])
    if kind == "dict" and len(names) > 1 and isinstance(x, (np.ndarray, tf.Tensor)):
        raise FeatureError(
            f"{where}: the model takes named features {list(names)}; pass a dict or a "
            f"DataFrame, got one {type(x).__name__}."
        )
    if isinstance(x, np.ndarray) or isinstance(x, tf.Tensor):
        name, expected = next(iter(names.items()))
        converted = _convert_feature(name, x, expected, where)
        if kind == "dict":
            return {name: converted}, _rows(converted)
        return converted, _rows(converted)
    return x, None


def _check_dataset_features(
    model: Any, spec: Any, kind: str, names: dict[str, Any], where: str
) -> None:
    features = spec[0] if isinstance(spec, tuple) else spec
    if isinstance(features, Mapping):
        _check_names(list(names), [str(k) for k in features], where)
        items = [(n, features[n]) for n in names]
    elif isinstance(features, (list, tuple)) and kind == "list":
        items = list(zip(names, features, strict=False))
    elif isinstance(features, tf.TensorSpec) and kind != "list" and len(names) == 1:
        items = [(next(iter(names)), features)]
    else:
        return
    for name, feature_spec in items:
        want, got = _kind(names[name]), _kind(getattr(feature_spec, "dtype", None))
        ok = want == got or want == "other" or (want == "float" and got in ("int", "bool"))
        ok = ok or (want == "int" and got == "bool")
        if not ok:
            raise FeatureError(
                f"{where}: feature {name!r} expects {names[name]} values, the dataset "
                f"yields {feature_spec.dtype}."
            )
    if isinstance(spec, tuple) and len(spec) > 1 and isinstance(spec[1], Mapping):
        unknown = [k for k in spec[1] if k not in model.task_names]
        if unknown:
            raise LabelError(
                f"{where}: the dataset's labels have keys {unknown} that are not tasks; "
                f"tasks are {model.task_names}."
            )


# -------------------------------------------------------------------- labels
def validate_label_array(task: Any, y: Any, where: str = "labels") -> np.ndarray:
    """Checks one task's in-memory labels: numeric, and valid or missing markers.

    Returns them as a NumPy array. Raises `LabelError` naming the task with
    the number of invalid labels, examples and their first rows.

    Example:
    >>> from mtl_keras import Binary
    >>> validate_label_array(Binary("click"), [0, 1, 2])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    mtl_keras.contracts.LabelError: ... task 'click' ...
    """
    if _is_dataframe(y) or type(y).__name__ == "Series":
        y = y.to_numpy()
    array = y.numpy() if isinstance(y, tf.Tensor) else np.asarray(y)
    if array.dtype.kind in "USO":
        if array.dtype.kind == "O":
            try:
                array = array.astype("float64")
            except (TypeError, ValueError):
                raise string_labels_error(task.name, array.dtype) from None
        else:
            raise string_labels_error(task.name, array.dtype)
    if array.dtype.kind not in "biuf":
        raise LabelError(
            f"{where}: labels of task {task.name!r} have dtype {array.dtype}; expected "
            f"{task.label_contract}."
        )
    invalid = task.check_labels(array).numpy()
    if invalid.any():
        raise LabelError(
            f"{where}: {int(invalid.sum())} labels of task {task.name!r} are not valid: "
            f"expected {task.label_contract}; got e.g. {array[invalid][:3].tolist()} "
            f"(rows {np.argwhere(invalid)[:3, 0].tolist()})."
        )
    return array


def labels_by_task(model: Any, y: Any, where: str) -> Any:
    """y (dict, DataFrame, list or single array) -> dict task -> labels, checked."""
    names = model.task_names
    if y is None or isinstance(y, tf.data.Dataset):
        return y
    if _is_dataframe(y):
        y = {str(c): y[c] for c in y.columns}
    if isinstance(y, (list, tuple)) and len(y) == len(names):
        y = dict(zip(names, y, strict=True))
    elif not isinstance(y, Mapping):
        if len(names) != 1:
            return y  # the model's own message
        y = {names[0]: y}
    unknown = [k for k in y if k not in names]
    if unknown:
        raise LabelError(f"{where}: `y` has keys {unknown} that are not tasks; tasks are {names}.")
    tasks = {t.name: t for t in model.tasks}
    return {k: validate_label_array(tasks[k], v, where) for k, v in y.items()}


def check_lengths(labels: Any, rows: int | None, what: str, where: str) -> None:
    if rows is None or not isinstance(labels, Mapping):
        return
    for name, value in labels.items():
        n = _rows(np.asarray(value) if not hasattr(value, "shape") else value)
        if n is not None and n != rows:
            raise InputContractError(
                f"{where}: {what} of task {name!r} have {n} rows but the features have {rows}."
            )


def prepare_sample_weight(
    model: Any, sample_weight: Any, labels: Any, rows: int | None, where: str
) -> Any:
    """Per-task masks: fills tasks not given with 1, checks shapes per task by name."""
    if sample_weight is None or not isinstance(sample_weight, Mapping):
        return sample_weight
    names = model.task_names
    unknown = [k for k in sample_weight if k not in names]
    if unknown:
        raise InputContractError(
            f"{where}: `sample_weight` has keys {unknown} that are not tasks; tasks are {names}."
        )
    tasks = {t.name: t for t in model.tasks}
    labelled = list(labels) if isinstance(labels, Mapping) else names
    out: dict[str, Any] = {}
    for name in labelled:
        if name not in sample_weight:
            if rows is None:
                raise InputContractError(
                    f"{where}: `sample_weight` has no entry for task {name!r}; give one per "
                    "labelled task."
                )
            out[name] = np.ones(rows, "float32")
            continue
        w = np.asarray(sample_weight[name], dtype="float32")
        label_shape = np.shape(labels[name]) if isinstance(labels, Mapping) else None
        ok_shapes = {(rows,), (rows, 1)}
        if tasks[name].per_token and label_shape is not None:
            ok_shapes.add(tuple(label_shape[:2]))
        if w.shape not in ok_shapes:
            raise InputContractError(
                f"{where}: `sample_weight` of task {name!r} has shape {w.shape}; expected "
                f"one weight per row, shape ({rows},)."
            )
        if finite.nonfinite_mask(w).any() or np.any(w < 0):
            raise InputContractError(
                f"{where}: `sample_weight` of task {name!r} must be finite and >= 0."
            )
        out[name] = w
    missing_labels = [k for k in sample_weight if k not in out]
    if missing_labels:
        raise InputContractError(
            f"{where}: `sample_weight` given for tasks {missing_labels} that have no labels."
        )
    return out


def check_weight_shape(task: Any, weight: Any, mask: Any) -> None:
    """Trace-time check of a per-task weight against the task's label mask."""
    w_shape, m_shape = weight.shape, mask.shape
    if w_shape.rank is None or m_shape.rank is None:
        return
    dims = list(w_shape)
    if w_shape.rank == m_shape.rank + 1 and dims[-1] == 1:
        dims = dims[:-1]
    if len(dims) > m_shape.rank or len(dims) == 0:
        raise InputContractError(
            f"`sample_weight` of task {task.name!r} has shape {tuple(w_shape)}; expected "
            f"one weight per row, {tuple(m_shape)}."
        )
    for a, b in zip(dims, list(m_shape), strict=False):
        if a is not None and b is not None and a != b:
            raise InputContractError(
                f"`sample_weight` of task {task.name!r} has shape {tuple(w_shape)}; expected "
                f"one weight per row, {tuple(m_shape)}."
            )


# ------------------------------------------------------------ step counters
@keras.saving.register_keras_serializable(package="mtl_keras")
class VectorSum(keras.metrics.Metric):
    """Running sum of a fixed-size vector (contract violation counters).

    Args:
        size: vector length.

    Example:
    >>> m = VectorSum(2)
    >>> m.update_state([1.0, 0.0]); m.update_state([1.0, 2.0])
    >>> m.result().numpy().tolist()
    [2.0, 2.0]
    """

    def __init__(self, size: int, name: str = "vector_sum", dtype: Any = "float32") -> None:
        super().__init__(name=name, dtype=dtype)
        self.size = size
        self.total = self.add_variable(shape=(size,), initializer="zeros", name="total")

    def update_state(self, values: Any, sample_weight: Any = None) -> None:
        self.total.assign_add(keras.ops.cast(values, self.dtype))

    def result(self) -> Any:
        return self.total.value

    def get_config(self) -> dict[str, Any]:
        return {"size": self.size, "name": self.name, "dtype": self.dtype}


class StepGuard:
    """Counts contract violations in the train/test steps (graph and XLA safe).

    Kept off the model's tracked state (a plain object), so it adds nothing
    to saved weights. Layout of the counter vector: invalid labels per task,
    non-finite values per float feature, non-finite loss per task,
    non-finite gradients per variable group (shared, each task, weighting),
    skipped batches.

    Args:
        model: the compiled `MultiTaskModel`.
        on_nonfinite: "raise" (default) or "skip".
        allow_nonfinite_features: features that may carry NaN/Inf.
    """

    def __init__(
        self, model: Any, on_nonfinite: str = "raise", allow_nonfinite_features: Any = ()
    ) -> None:
        if on_nonfinite not in ON_NONFINITE:
            raise ValueError(f"`on_nonfinite` must be one of {ON_NONFINITE}, got {on_nonfinite!r}.")
        kind, names = input_signature(model)
        allowed = (
            [allow_nonfinite_features]
            if isinstance(allow_nonfinite_features, str)
            else list(allow_nonfinite_features or ())
        )
        unknown = [f for f in allowed if f not in names]
        if unknown:
            raise FeatureError(
                f"`allow_nonfinite_features` names {unknown}, which are not inputs of the "
                f"model {list(names)}."
            )
        self.on_nonfinite = on_nonfinite
        self.specs = {t.name: t for t in getattr(model, "_effective_tasks", model.tasks)}
        self.allowed = allowed
        self.kind = kind
        self.input_names = list(names)
        self.float_features = [
            n for n, d in names.items() if _kind(d) == "float" and n not in allowed
        ]
        self.tasks = model.task_names
        self.groups = ["shared", *self.tasks, "weighting"]
        t, f, g = len(self.tasks), len(self.float_features), len(self.groups)
        self.slices = {
            "labels": slice(0, t),
            "features": slice(t, t + f),
            "losses": slice(t + f, 2 * t + f),
            "grads": slice(2 * t + f, 2 * t + f + g),
            "skipped": slice(2 * t + f + g, 2 * t + f + g + 1),
        }
        # Held by this plain object, so the model never tracks or saves them.
        self.train_counts = VectorSum(2 * t + f + g + 1, name="contract_train")
        # Evaluation: invalid labels per task, then non-finite features.
        self.test_counts = VectorSum(t + f, name="contract_test")
        self.predict_counts = VectorSum(max(f, 1), name="contract_predict")

    # ---- in the step (tensors only)
    def _label_counts(self, model: Any, y: Any) -> Any:
        labels = model._labels_by_task(y)
        counts = []
        for task in model._effective_tasks:
            if task.name not in labels:
                counts.append(tf.constant(0.0))
                continue
            bad = task.check_labels(labels[task.name])
            counts.append(tf.reduce_sum(tf.cast(bad, tf.float32)))
        return tf.stack(counts)

    def _feature_counts(self, x: Any) -> Any:
        if not self.float_features:
            return tf.zeros([0])
        if isinstance(x, Mapping):
            values = dict(x)
        elif isinstance(x, (list, tuple)):
            values = dict(zip(self.input_names, x, strict=False))
        else:
            values = {self.input_names[0]: x}
        counts = []
        for name in self.float_features:
            v = values.get(name)
            if isinstance(v, np.ndarray):  # *_on_batch run eagerly passes arrays through
                v = tf.constant(v)
            if v is None or not isinstance(v, tf.Tensor):
                counts.append(tf.constant(0.0))
                continue
            counts.append(finite.count_nonfinite(v))
        return tf.stack(counts)

    def train_checks(
        self, model: Any, x: Any, y: Any, task_losses: Any, grads: Sequence[Any], groups: Any
    ) -> Any:
        """Updates the counters; returns a scalar bool: apply this batch's update."""
        labels = self._label_counts(model, y)
        features = self._feature_counts(x)
        losses = tf.cast(~tf.math.is_finite(tf.cast(task_losses, tf.float32)), tf.float32)
        shared, per_task, own = groups

        def group_flag(indices: Sequence[int]) -> Any:
            return finite.any_nonfinite([grads[i] for i in indices])

        if isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer):
            # Dynamic loss scaling expects overflowing gradients now and then:
            # the optimizer skips that step and lowers the scale itself.
            grad_flags = tf.zeros([len(self.groups)])
        else:
            grad_flags = tf.stack(
                [group_flag(shared), *[group_flag(ids) for ids in per_task], group_flag(own)]
            )
        counts = tf.concat([labels, features, losses, grad_flags], axis=0)
        ctx = tf.distribute.get_replica_context()
        if ctx is not None and ctx.num_replicas_in_sync > 1:
            # Every replica must take the same branch around the update.
            counts = ctx.all_reduce(tf.distribute.ReduceOp.SUM, counts)
        ok = tf.equal(tf.reduce_sum(counts), 0.0)
        # Sticky: once an error is counted, no later batch of the same
        # execution (steps_per_execution > 1) is applied before it is raised.
        prior = self.train_counts.total.value
        fatal = prior[self.slices["labels"]]
        if self.on_nonfinite == "raise":
            fatal = prior[: self.slices["grads"].stop]
        ok = tf.logical_and(ok, tf.equal(tf.reduce_sum(fatal), 0.0))
        skipped = tf.reshape(1.0 - tf.cast(ok, tf.float32), [1])
        self.train_counts.update_state(tf.concat([counts, skipped], axis=0))
        return ok

    def test_checks(self, model: Any, y: Any, x: Any = None) -> Any:
        """Counts invalid labels and non-finite features of an evaluation
        batch; returns a scalar bool: the batch counts in the metrics."""
        features = (
            self._feature_counts(x) if x is not None else tf.zeros([len(self.float_features)])
        )
        counts = tf.concat([self._label_counts(model, y), features], axis=0)
        ctx = tf.distribute.get_replica_context()
        if ctx is not None and ctx.num_replicas_in_sync > 1:
            counts = ctx.all_reduce(tf.distribute.ReduceOp.SUM, counts)
        self.test_counts.update_state(counts)
        return tf.equal(tf.reduce_sum(counts), 0.0)

    def predict_checks(self, x: Any) -> None:
        """Counts non-finite features of a prediction batch."""
        if self.float_features:
            self.predict_counts.update_state(self._feature_counts(x))

    # ---- on the host, after each batch
    def raise_for(self, counts: np.ndarray, stage: str, batch: int) -> int:
        """Raises for the violations in `counts` (a delta); returns batches skipped.

        `stage` is "train", "evaluation" or "predict" (the counter layouts of
        `train_counts`, `test_counts` and `predict_counts`).
        """
        if stage == "predict":
            return self._raise_for_features(counts, stage, batch)
        labels = counts[self.slices["labels"]]
        for task, n in zip(self.tasks, labels, strict=False):
            if n > 0:
                spec = self.specs[task]
                raise LabelError(
                    f"{stage} batch {batch}: {int(n)} labels of task {task!r} are not valid: "
                    f"expected {spec.label_contract}. They were not trained on; fix the data "
                    "or mark them as missing."
                )
        if stage != "train":
            return self._raise_for_features(counts[self.slices["features"]], stage, batch)
        features = counts[self.slices["features"]]
        losses = counts[self.slices["losses"]]
        grads = counts[self.slices["grads"]]
        skipped = int(counts[self.slices["skipped"]][0])
        bad_features = [f for f, n in zip(self.float_features, features, strict=False) if n > 0]
        bad_losses = [t for t, n in zip(self.tasks, losses, strict=False) if n > 0]
        bad_grads = [g for g, n in zip(self.groups, grads, strict=False) if n > 0]
        if not (bad_features or bad_losses or bad_grads):
            return 0
        parts = []
        if bad_features:
            parts.append(
                "non-finite values (NaN/Inf) in features "
                + ", ".join(
                    f"{f!r} ({int(n)} values)"
                    for f, n in zip(self.float_features, features, strict=False)
                    if n > 0
                )
            )
        if bad_losses:
            parts.append(f"non-finite loss of tasks {bad_losses}")
        if bad_grads:
            parts.append(
                "non-finite gradients of the "
                + ", ".join(
                    "shared"
                    if g == "shared"
                    else "weighting strategy's"
                    if g == "weighting"
                    else f"task {g!r}"
                    for g in bad_grads
                )
                + " parameters"
            )
        message = f"{stage} batch {batch}: " + "; ".join(parts) + "."
        if self.on_nonfinite == "raise":
            raise NonFiniteError(
                message + " The batch was not applied. Fix the data (or list features a "
                "layer imputes in compile(allow_nonfinite_features=...)), lower the learning "
                "rate, or pass compile(on_nonfinite='skip') to skip such batches."
            )
        warnings.warn(message + " Skipped.", RuntimeWarning, stacklevel=2)
        return skipped

    def _raise_for_features(self, features: np.ndarray, stage: str, batch: int) -> int:
        """Evaluation/prediction: non-finite features raise (predict, or
        evaluation with "raise") or skip the batch (evaluation with "skip")."""
        bad = [(f, int(n)) for f, n in zip(self.float_features, features, strict=False) if n > 0]
        if not bad:
            return 0
        message = (
            f"{stage} batch {batch}: non-finite values (NaN/Inf) in features "
            + ", ".join(f"{f!r} ({n} values)" for f, n in bad)
            + "."
        )
        hint = (
            " Fix the data, or list features a layer of the model imputes in "
            "compile(allow_nonfinite_features=...)."
        )
        if stage == "predict":
            raise NonFiniteError(
                message + " Predictions for such rows would be NaN, or silently wrong where "
                "an op maps NaN to a number (oneDNN's ReLU)." + hint
            )
        if self.on_nonfinite == "raise":
            raise NonFiniteError(
                message + " The batch was left out of the metrics." + hint + " Or pass "
                "compile(on_nonfinite='skip') to skip such batches."
            )
        warnings.warn(message + " Skipped (left out of the metrics).", RuntimeWarning, stacklevel=3)
        return 1

    def guard_callback(self) -> ContractGuard:
        return ContractGuard(self)


class ContractGuard(keras.callbacks.Callback):
    """Raises the contract errors counted in the steps, at the end of each batch.

    Added by `MultiTaskModel.fit/evaluate`; with `on_nonfinite="skip"`, logs
    `nonfinite_skipped` (batches skipped this epoch).

    Args:
        guard: the model's `StepGuard`.
    """

    def __init__(self, guard: StepGuard) -> None:
        super().__init__()
        self.guard = guard
        self._train_seen = np.zeros(guard.train_counts.size)
        self._test_seen = np.zeros(guard.test_counts.size)
        self._predict_seen = np.zeros(guard.predict_counts.size)
        self._skipped_epoch = 0

    def _delta(self, metric: VectorSum, seen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        now = np.array(metric.total.numpy(), dtype="float64")
        return now - seen, now

    def on_train_begin(self, logs: Any = None) -> None:
        self.guard.train_counts.reset_state()
        self._train_seen = np.zeros(self.guard.train_counts.size)

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._skipped_epoch = 0

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        delta, self._train_seen = self._delta(self.guard.train_counts, self._train_seen)
        if delta.any():
            self._skipped_epoch += self.guard.raise_for(delta, "train", batch)

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        if self.guard.on_nonfinite == "skip" and logs is not None:
            logs["nonfinite_skipped"] = float(self._skipped_epoch)
            if self._skipped_epoch:
                logger.warning(
                    "epoch %d: %d batches skipped for non-finite values",
                    epoch + 1,
                    self._skipped_epoch,
                )

    def on_test_begin(self, logs: Any = None) -> None:
        self.guard.test_counts.reset_state()
        self._test_seen = np.zeros(self.guard.test_counts.size)

    def on_test_batch_end(self, batch: int, logs: Any = None) -> None:
        delta, self._test_seen = self._delta(self.guard.test_counts, self._test_seen)
        if delta.any():
            self.guard.raise_for(delta, "evaluation", batch)

    def on_predict_begin(self, logs: Any = None) -> None:
        self.guard.predict_counts.reset_state()
        self._predict_seen = np.zeros(self.guard.predict_counts.size)

    def on_predict_batch_end(self, batch: int, logs: Any = None) -> None:
        delta, self._predict_seen = self._delta(self.guard.predict_counts, self._predict_seen)
        if delta.any():
            self.guard.raise_for(delta, "predict", batch)


def step_state(model: Any) -> list[tuple[Any, Any]]:
    """(variable, value) of the state a training step may write besides the
    optimizer's update: the weighting strategy's variables (DWA's history,
    FAMO's logits, GradNorm's weights, NashMTL's cache, GradVac's targets,
    RLW's generator) and the model's non-trainable variables (BatchNorm's
    moving statistics). Read before the step, so `apply_if` can put them
    back when the batch is not applied.

    Reading costs no copy for variables the step does not write (frozen
    weights): TensorFlow copies a buffer only when it is written while read.

    Args:
        model: the `MultiTaskModel` (its `weighting` may be None).

    Example:
    >>> model.compile("adam", weighting="dwa")
    >>> sorted({v.path.split("/")[-1] for v, _ in step_state(model)})[:3]
    ['epochs_seen', 'loss_counts', 'loss_sums']
    """
    seen: set[int] = set()
    state = []
    strategy = getattr(model, "weighting", None)
    for v in [
        *(strategy.variables if strategy is not None else []),
        *model.non_trainable_variables,
    ]:
        if id(v) in seen:
            continue
        seen.add(id(v))
        state.append((v, tf.identity(v.value if hasattr(v, "value") else v)))
    return state


def build_optimizer(model: Any) -> None:
    """Builds the optimizer's slots eagerly, before `fit` traces the step.

    Without a strategy Keras builds the optimizer inside the first trace of the
    train function; variables created there make `tf.function` trace the whole
    step a second time, which doubles the first `fit`'s start-up.
    """
    optimizer = getattr(model, "optimizer", None)
    if model.built and optimizer is not None and not optimizer.built:
        with model.distribute_strategy.scope():
            optimizer.build(model.trainable_variables)


def apply_if(
    ok: Any,
    optimizer: Any,
    grads: Sequence[Any],
    variables: Sequence[Any],
    state: Sequence[tuple[Any, Any]] = (),
) -> None:
    """`optimizer.apply(grads, variables)` only when `ok`; else puts `state`
    (from `step_state`) back. A skipped batch leaves no trace: weights,
    optimizer slots and step count, strategy state and moving statistics are
    as before it, also under `tf.distribute`.

    Under tf.distribute (CPU, GPU without XLA) the optimizer's update is a
    synchronisation point (merge_call), which TensorFlow does not allow in a
    `tf.cond` in replica context: as Keras's `LossScaleOptimizer` does, the
    decision is taken in cross-replica context (one merge_call; `ok` is the
    same on every replica, see `StepGuard.train_checks`) and the update runs
    per replica inside the chosen branch.

    Args:
        ok: scalar bool tensor, identical on every replica.
        optimizer: the model's optimizer.
        grads: gradients aligned with `variables`.
        variables: the trainable variables.
        state: (variable, value before the step) pairs restored when skipped.
    """
    if not optimizer.built:
        optimizer.build(variables)

    def apply() -> Any:
        optimizer.apply(grads, variables)
        return tf.constant(True)

    def restore(values: Sequence[Any]) -> Any:
        for (var, _), value in zip(state, values, strict=True):
            var.assign(value)
        return tf.constant(False)

    replica = tf.distribute.get_replica_context()
    distributed = tf.distribute.has_strategy() and replica is not None
    if distributed and not tf.__internal__.distribute.strategy_supports_no_merge_call():

        def cross_replica(distribution: Any, ok: Any, grads: Any, values: Any) -> None:
            first = distribution.experimental_local_results

            def apply_all() -> Any:
                distribution.extended.call_for_each_replica(
                    lambda g: optimizer.apply(g, variables), args=(grads,)
                )
                return tf.constant(True)

            # Every replica's strategy state is the same (global losses):
            # the first replica's saved values restore all of them.
            tf.cond(first(ok)[0], apply_all, lambda: restore([first(v)[0] for v in values]))

        replica.merge_call(cross_replica, args=(ok, list(grads), [v for _, v in state]))
        return
    tf.cond(ok, apply, lambda: restore([v for _, v in state]))


def if_applied(ok: Any, update_metrics: Any, model: Any, training: bool = True) -> dict[str, Any]:
    """Runs `update_metrics` only for applied batches; returns the metric results.

    Args:
        ok: scalar bool, the batch counts.
        update_metrics: updates the metrics, returns the logs.
        model: the `MultiTaskModel`.
        training: False in `test_step` (whose logs have no task weights).
    """
    guard = getattr(model, "_contracts", None)
    if guard is None or guard.on_nonfinite != "skip":
        return update_metrics()

    def unchanged() -> dict[str, Any]:
        logs = model.get_metrics_result()
        if not training:
            weights = {m.name for m in getattr(model, "_task_weight_trackers", [])}
            logs = {k: v for k, v in logs.items() if k not in weights}
        return logs

    return tf.cond(ok, update_metrics, unchanged)


# ------------------------------------------------------- fit/evaluate/predict
_FIT_PARAMS = list(inspect.signature(keras.Model.fit).parameters)[1:]
_EVAL_PARAMS = list(inspect.signature(keras.Model.evaluate).parameters)[1:]


def _bind(params: list[str], args: tuple, kwargs: dict) -> dict[str, Any]:
    bound = dict(zip(params, args, strict=False))
    overlap = set(bound) & set(kwargs)
    if overlap:
        raise TypeError(f"got multiple values for arguments {sorted(overlap)}")
    return {**bound, **kwargs}


def _prepare_xy(model: Any, x: Any, y: Any, sw: Any, where: str) -> tuple[Any, Any, Any]:
    x, rows = prepare_features(model, x, where)
    labels = labels_by_task(model, y, where)
    check_lengths(labels, rows, "labels", where)
    sw = prepare_sample_weight(model, sw, labels, rows, where)
    return x, labels, sw


def _with_guard(model: Any, callbacks: Any) -> Any:
    guard = getattr(model, "_contracts", None)
    if guard is None:
        return callbacks
    cb = guard.guard_callback()
    if callbacks is None:
        return [cb]
    if isinstance(callbacks, keras.callbacks.CallbackList):
        if any(isinstance(c, ContractGuard) for c in callbacks.callbacks):
            return callbacks
        callbacks.callbacks.insert(0, cb)
        callbacks.set_model(model)
        return callbacks
    callbacks = list(callbacks)
    if any(isinstance(c, ContractGuard) for c in callbacks):
        return callbacks
    return [cb, *callbacks]


def prepare_fit(model: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    """Checked keyword arguments for `keras.Model.fit`."""
    call = _bind(_FIT_PARAMS, args, kwargs)
    x, y, sw = _prepare_xy(model, call.get("x"), call.get("y"), call.get("sample_weight"), "fit")
    call.update(x=x, y=y)
    if sw is not None:
        call["sample_weight"] = sw
    if isinstance(x, tf.data.Dataset) and "shuffle" not in call:
        # A dataset carries its own shuffling; Keras warns on its default True.
        call["shuffle"] = False
    val = call.get("validation_data")
    if isinstance(val, (tuple, list)) and len(val) in (2, 3):
        vx, vy, vsw = _prepare_xy(
            model, val[0], val[1], val[2] if len(val) == 3 else None, "fit validation_data"
        )
        call["validation_data"] = (vx, vy) if vsw is None else (vx, vy, vsw)
    elif isinstance(val, tf.data.Dataset):
        prepare_features(model, val, "fit validation_data")
    call["callbacks"] = _with_guard(model, call.get("callbacks"))
    return call


def prepare_evaluate(model: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    """Checked keyword arguments for `keras.Model.evaluate`."""
    call = _bind(_EVAL_PARAMS, args, kwargs)
    if call.get("_use_cached_eval_dataset"):
        # fit's validation: data checked by prepare_fit, guard already in the list.
        return call
    x, y, sw = _prepare_xy(
        model, call.get("x"), call.get("y"), call.get("sample_weight"), "evaluate"
    )
    call.update(x=x, y=y)
    if sw is not None:
        call["sample_weight"] = sw
    call["callbacks"] = _with_guard(model, call.get("callbacks"))
    return call


_PREDICT_PARAMS = list(inspect.signature(keras.Model.predict).parameters)[1:]


def prepare_predict(model: Any, x: Any) -> Any:
    """Features for `keras.Model.predict`, matched by name."""
    return prepare_features(model, x, "predict")[0]


def predict_guard(model: Any) -> StepGuard:
    """The model's `StepGuard`; an uncompiled model gets a default one (its
    non-finite features raise in `predict` too)."""
    guard = getattr(model, "_contracts", None)
    if guard is None:
        guard = StepGuard(model)
        model._contracts = guard
    return guard


def prepare_predict_call(model: Any, x: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    """Checked keyword arguments for `keras.Model.predict`: features matched by
    name, and the guard that raises `NonFiniteError` for NaN/Inf features
    (unless listed in `compile(allow_nonfinite_features=...)`)."""
    call = _bind(_PREDICT_PARAMS, (x, *args), kwargs)
    call["x"] = prepare_predict(model, call.get("x"))
    predict_guard(model)
    call["callbacks"] = _with_guard(model, call.get("callbacks"))
    return call


def predict_checks(model: Any, data: Any) -> None:
    """In `predict_step`: counts the batch's non-finite features."""
    guard = getattr(model, "_contracts", None)
    if guard is not None:
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        guard.predict_checks(x)


def run_predict_on_batch(model: Any, method: Any, x: Any) -> Any:
    """`predict_on_batch` with the same checks as `predict`."""
    x = prepare_predict(model, x)
    guard = predict_guard(model)
    guard.predict_counts.reset_state()
    out = method(x)
    delta = np.array(guard.predict_counts.total.numpy(), dtype="float64")
    if delta.any():
        guard.raise_for(delta, "predict", 0)
    return out


def run_on_batch(
    model: Any, method: Any, stage: str, x: Any, y: Any, sample_weight: Any, kwargs: dict
) -> Any:
    """`train_on_batch`/`test_on_batch` with the same checks as `fit`/`evaluate`.

    Args:
        model: the `MultiTaskModel`.
        method: Keras's own `train_on_batch` or `test_on_batch` (bound).
        stage: "train" or "test".
        x, y, sample_weight, kwargs: the call's arguments.
    """
    x, y, sample_weight = _prepare_xy(model, x, y, sample_weight, f"{stage}_on_batch")
    guard = getattr(model, "_contracts", None)
    if guard is None:
        return method(x, y, sample_weight=sample_weight, **kwargs)
    metric = guard.train_counts if stage == "train" else guard.test_counts
    metric.reset_state()  # counters are sticky until read (see train_checks)
    logs = method(x, y, sample_weight=sample_weight, **kwargs)
    delta = np.array(metric.total.numpy(), dtype="float64")
    if delta.any():
        guard.raise_for(delta, "train" if stage == "train" else "evaluation", 0)
    return logs
