"""Task specifications: what each output of a multi-task model predicts.

A task spec is the single source of truth for one output: its head (units,
activation, float32 dtype so mixed precision never reaches the loss), its
default loss and metrics, its static weight, its label dtype and how a missing
label is marked. Builders create heads from it; `MultiTaskModel` takes losses,
metrics, weights and label masks from it.

Missing labels:
- float labels (Regression, Binary, Multilabel): NaN marks a missing label;
  Binary and Multilabel labels are 0/1, so a negative value (e.g. -1) is also
  treated as missing.
- integer labels (Multiclass): -1 (any negative value) marks a missing label.
- an explicit mask: pass `sample_weight={task_name: mask}` to `fit`; 0 drops
  the row for that task, other values weight it.

Invalid labels (neither valid nor a missing marker: a Binary 2 or +Inf, a
Multiclass id >= num_classes or 2.5, a Regression ±Inf) are not masked
silently: `Task.check_labels` flags them and training/evaluation stops with
an error naming the task (see `mtl_keras.contracts`).
"""

from __future__ import annotations

import keyword
import math
import re
from typing import Any

import keras
from keras import ops

from mtl_keras.boxes import BOX_FORMATS, BoxHead, BoxIoU, BoxLoss

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_RESERVED_NAMES = {"loss", "weights", "outputs", "inputs"}


def validate_task_name(name: Any) -> str:
    """Checks that `name` can name a Keras output, a SavedModel output and a
    TensorBoard tag group, and returns it."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"Task name {name!r} is not valid: expected a string starting with a "
            "letter followed by letters, digits or underscores (it names a "
            "Keras output, a SavedModel output key and TensorBoard tags)."
        )
    if keyword.iskeyword(name) or name in _RESERVED_NAMES:
        raise ValueError(
            f"Task name {name!r} is reserved; choose another name "
            f"(reserved: {sorted(_RESERVED_NAMES)} and Python keywords)."
        )
    return name


def validate_tasks(tasks: Any) -> list[Task]:
    """Checks a sequence of task specs (non-empty, all `Task`, unique names)."""
    if isinstance(tasks, Task):
        tasks = [tasks]
    if isinstance(tasks, dict):
        raise ValueError(
            "`tasks` must be a list of Task specs (e.g. [Binary('income')]), "
            "not a dict: each task already carries its name."
        )
    tasks = list(tasks or [])
    if not tasks:
        raise ValueError("`tasks` is empty: a multi-task model needs at least one Task.")
    for t in tasks:
        if not isinstance(t, Task):
            raise ValueError(
                f"Expected Task specs (Regression, Binary, Multiclass, Multilabel, "
                f"...), got {t!r} of type {type(t).__name__}."
            )
    names = [t.name for t in tasks]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"Task names must be unique; duplicated: {dupes}.")
    return tasks


def _positive_int(value: Any, what: str, task: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"Task {task!r}: `{what}` must be an integer >= {minimum}, got {value!r}.")
    return value


def _build_metric(identifier: Any, task: Task) -> keras.metrics.Metric:
    """Turns a metric identifier into a fresh metric named `<task>_<metric>`."""
    if isinstance(identifier, str) and identifier.lower() in ("accuracy", "acc"):
        metric = task.accuracy_metric()
    elif isinstance(identifier, keras.metrics.Metric):
        metric = identifier.__class__.from_config(identifier.get_config())
    else:
        got = keras.metrics.get(identifier)
        if isinstance(got, type):
            got = got()
        if isinstance(got, keras.metrics.Metric):
            metric = got
        elif callable(got):
            fn_name = getattr(identifier, "__name__", str(identifier))
            metric = keras.metrics.MeanMetricWrapper(got, name=fn_name)
        else:  # pragma: no cover - keras.metrics.get raises first
            raise ValueError(f"Task {task.name!r}: unknown metric {identifier!r}.")
    config = metric.get_config()
    base = config.get("name") or metric.name
    if not base.startswith(task.name + "_"):
        config["name"] = f"{task.name}_{base}"
    return metric.__class__.from_config(config)


class Task:
    """Base class of all task specs.

    Args:
        name: output name; a letter followed by letters, digits or underscores.
        weight: static loss weight (used by `weighting.Static` and as the
            initial/prior weight by other strategies).
        loss: optional override of the default loss (a Keras loss identifier,
            `keras.losses.Loss` or per-sample callable `fn(y_true, y_pred)`).
        metrics: optional override of the default metrics (identifiers or
            `keras.metrics.Metric` objects). Names are prefixed with the task.
    """

    activation: str | None = None
    label_dtype: str = "float32"
    # True when labels and outputs are per token, (batch, seq_len, ...):
    # builders then give the task a per-token head instead of a pooled one.
    per_token: bool = False

    def __init__(
        self,
        name: str,
        weight: float = 1.0,
        loss: Any = None,
        metrics: list[Any] | None = None,
    ) -> None:
        self.name = validate_task_name(name)
        if (
            isinstance(weight, bool)
            or not isinstance(weight, (int, float))
            or not (math.isfinite(weight) and weight >= 0)
        ):
            raise ValueError(
                f"Task {name!r}: `weight` must be a finite number >= 0, got {weight!r}."
            )
        self.weight = float(weight)
        self.loss = loss
        if metrics is not None and not isinstance(metrics, (list, tuple)):
            raise ValueError(
                f"Task {name!r}: `metrics` must be a list, got {type(metrics).__name__}."
            )
        self.metrics = list(metrics) if metrics is not None else None

    # --- head -------------------------------------------------------------
    @property
    def units(self) -> int:
        raise NotImplementedError

    def output_layer(self, name: str | None = None) -> keras.layers.Layer:
        """The task's output layer: Dense(units, activation) in float32, named
        after the task so that the model output is keyed by the task name."""
        return keras.layers.Dense(
            self.units, activation=self.activation, dtype="float32", name=name or self.name
        )

    def head(self, x: Any) -> Any:
        """Applies the output layer to a feature tensor."""
        return self.output_layer()(x)

    def describe_output(self) -> str:
        """What the served output means (export metadata), with its shape."""
        return f"raw model output, shape (batch, {self.units})"

    # --- loss -------------------------------------------------------------
    def default_loss(self) -> Any:
        raise NotImplementedError

    def loss_fn(self) -> Any:
        """Per-sample loss callable `fn(y_true, y_pred) -> (batch, ...)`."""
        loss = self.loss if self.loss is not None else self.default_loss()
        if isinstance(loss, str) or isinstance(loss, dict):
            loss = keras.losses.get(loss)
        if isinstance(loss, keras.losses.Loss):
            return loss.call  # unreduced values
        if callable(loss):
            return loss
        raise ValueError(f"Task {self.name!r}: invalid loss {loss!r}.")

    # --- labels -----------------------------------------------------------
    def prepare_labels(self, y: Any, y_pred: Any) -> tuple[Any, Any]:
        """Returns (labels safe to feed the loss, float mask).

        The mask is per row, `(batch,)`, or finer (e.g. per token,
        `(batch, seq_len)` for `Tagging`); the task loss is the mean of the
        unreduced loss over the elements where the mask is non-zero."""
        y = ops.convert_to_tensor(y)
        y = ops.cast(y, "float32")
        if len(y.shape) == len(y_pred.shape) - 1:
            y = ops.expand_dims(y, -1)
        valid = self._valid(y)
        if len(y.shape) == 2 and y.shape[-1] == 1:
            row_valid = ops.reshape(valid, (-1,))
        else:
            row_valid = ops.all(valid, axis=tuple(range(1, len(y.shape))))
        y_safe = ops.where(valid, y, ops.zeros_like(y))
        return y_safe, ops.cast(row_valid, "float32")

    def _valid(self, y: Any) -> Any:
        return ops.isfinite(y)  # NaN is missing, ±Inf is invalid (see check_labels)

    # What a valid label is, for error messages.
    label_contract: str = "finite numbers (NaN marks a missing label)"

    def check_labels(self, y: Any) -> Any:
        """Boolean tensor, True where a label is neither valid nor a missing marker.

        Works eagerly, in graph mode and under XLA (pure tensor ops, no
        raising): `MultiTaskModel` counts these per task in its train and
        test steps, masks them out of the loss and stops with an error naming
        the task (`mtl_keras.contracts`). Shape: that of `y`.

        Example:
        >>> import numpy as np
        >>> Regression("y").check_labels(np.array([1.0, np.nan, np.inf])).numpy().tolist()
        [False, False, True]
        """
        y = ops.cast(ops.convert_to_tensor(y), "float32")
        return ops.isinf(y)

    def per_sample_loss(self, y_safe: Any, y_pred: Any) -> Any:
        """Per-row loss, shape (batch,)."""
        values = self.loss_fn()(y_safe, ops.cast(y_pred, "float32"))
        values = ops.cast(values, "float32")
        while len(values.shape) > 1:
            values = ops.mean(values, axis=-1)
        return values

    # --- metrics ----------------------------------------------------------
    def default_metrics(self) -> list[Any]:
        return []

    def accuracy_metric(self) -> keras.metrics.Metric:
        return keras.metrics.BinaryAccuracy(name="accuracy")

    def build_metrics(self) -> list[keras.metrics.Metric]:
        ids = self.metrics if self.metrics is not None else self.default_metrics()
        return [_build_metric(m, self) for m in ids]

    # --- serialization ----------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "weight": self.weight,
            "loss": keras.saving.serialize_keras_object(self.loss),
            "metrics": None
            if self.metrics is None
            else [keras.saving.serialize_keras_object(m) for m in self.metrics],
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Task:
        config = dict(config)
        config["loss"] = keras.saving.deserialize_keras_object(config.get("loss"))
        if config.get("metrics") is not None:
            config["metrics"] = [
                keras.saving.deserialize_keras_object(m) for m in config["metrics"]
            ]
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if v is not None)
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.name))


@keras.saving.register_keras_serializable(package="mtl_keras")
class Regression(Task):
    """A real-valued target (one or more values per row).

    Head: linear Dense(units). Default loss: mean squared error. Metrics: MAE
    and RMSE. Missing label: NaN (a row counts as labelled when all of its
    values are present). ±Inf is invalid: an error naming the task.

    Args:
        name: output name.
        units: number of values predicted per row.
        weight, loss, metrics: see `Task`.

    Example:
    >>> task = Regression("age")
    >>> task.units
    1
    """

    activation = None

    def __init__(self, name: str, units: int = 1, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self._units = _positive_int(units, "units", name)

    @property
    def units(self) -> int:
        return self._units

    def describe_output(self) -> str:
        return f"predicted value(s) in label units, shape (batch, {self.units})"

    def default_loss(self) -> Any:
        return keras.losses.MeanSquaredError()

    def default_metrics(self) -> list[Any]:
        return [
            keras.metrics.MeanAbsoluteError(name="mae"),
            keras.metrics.RootMeanSquaredError(name="rmse"),
        ]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self._units}


@keras.saving.register_keras_serializable(package="mtl_keras")
class Binary(Task):
    """A binary target with labels 0/1.

    Head: Dense(1, sigmoid) giving P(label = 1). Default loss: binary
    cross-entropy. Metrics: AUC and accuracy. Missing label: NaN or any
    negative value (e.g. -1). Any other value (2, 0.5, +Inf) is invalid: an
    error naming the task (`check_labels`).

    Example:
    >>> Binary("income").units
    1
    """

    activation = "sigmoid"
    label_contract = "0 or 1 (NaN or a negative value marks a missing label)"

    @property
    def units(self) -> int:
        return 1

    def _valid(self, y: Any) -> Any:
        return ops.logical_or(ops.equal(y, 0.0), ops.equal(y, 1.0))

    def check_labels(self, y: Any) -> Any:
        return _invalid_binary(y)

    def describe_output(self) -> str:
        return "probability that the label is 1 (sigmoid), shape (batch, 1)"

    def default_loss(self) -> Any:
        return keras.losses.BinaryCrossentropy()

    def default_metrics(self) -> list[Any]:
        return [keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")]


@keras.saving.register_keras_serializable(package="mtl_keras")
class Multiclass(Task):
    """One of `num_classes` classes per row, labels are integer class ids.

    Head: Dense(num_classes, softmax). Default loss: sparse categorical
    cross-entropy. Metrics: accuracy. Missing label: -1 (any negative id) or
    NaN. An id >= num_classes, a non-integral float id or ±Inf is invalid:
    it never reaches the loss and training/evaluation stops with an error
    naming the task (eagerly, in graph mode and under XLA).

    Example:
    >>> Multiclass("digit", num_classes=10).units
    10
    """

    activation = "softmax"
    label_dtype = "int32"

    def __init__(self, name: str, num_classes: int, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.num_classes = _positive_int(num_classes, "num_classes", name, minimum=2)

    @property
    def units(self) -> int:
        return self.num_classes

    @property
    def label_contract(self) -> str:  # type: ignore[override]
        return (
            f"integer class ids in [0, {self.num_classes}) (a negative id or NaN marks a "
            "missing label)"
        )

    def check_labels(self, y: Any) -> Any:
        return _invalid_ids(y, self.num_classes)

    def prepare_labels(self, y: Any, y_pred: Any) -> tuple[Any, Any]:
        y = ops.convert_to_tensor(y)
        # Invalid ids are masked here (counted by check_labels): an id out of
        # range would otherwise be an opaque kernel error, or NaN under XLA.
        valid = _valid_ids(y, self.num_classes)
        if "float" in str(y.dtype):
            y = ops.where(valid, y, ops.zeros_like(y))
        y = ops.where(valid, ops.cast(y, "int32"), ops.zeros_like(y, dtype="int32"))
        if len(y.shape) == len(y_pred.shape):
            y = ops.squeeze(y, -1)
            valid = ops.squeeze(valid, -1)
        return y, ops.cast(valid, "float32")

    def describe_output(self) -> str:
        n = self.num_classes
        return f"class probabilities (softmax over {n} classes), shape (batch, {n}); argmax is the predicted class id"

    def default_loss(self) -> Any:
        return keras.losses.SparseCategoricalCrossentropy()

    def accuracy_metric(self) -> keras.metrics.Metric:
        return keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    def default_metrics(self) -> list[Any]:
        return ["accuracy"]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package="mtl_keras")
class Multilabel(Task):
    """`num_labels` independent 0/1 labels per row.

    Head: Dense(num_labels, sigmoid). Default loss: binary cross-entropy
    averaged over the row's labels. Metrics: multi-label AUC and accuracy.
    Missing label: NaN or a negative value for the whole row (a row with only
    some labels missing is rejected as missing too: mask it per label by
    splitting it into Binary tasks instead).

    Example:
    >>> Multilabel("tags", num_labels=5).units
    5
    """

    activation = "sigmoid"
    label_contract = "0 or 1 per label (NaN or a negative value marks a missing row)"

    def __init__(self, name: str, num_labels: int, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.num_labels = _positive_int(num_labels, "num_labels", name)

    @property
    def units(self) -> int:
        return self.num_labels

    def _valid(self, y: Any) -> Any:
        return ops.logical_or(ops.equal(y, 0.0), ops.equal(y, 1.0))

    def check_labels(self, y: Any) -> Any:
        return _invalid_binary(y)

    def describe_output(self) -> str:
        return f"independent per-label probabilities (sigmoid), shape (batch, {self.num_labels})"

    def default_loss(self) -> Any:
        return keras.losses.BinaryCrossentropy()

    def default_metrics(self) -> list[Any]:
        return [
            keras.metrics.AUC(name="auc", multi_label=True, num_labels=self.num_labels),
            keras.metrics.BinaryAccuracy(name="accuracy"),
        ]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_labels": self.num_labels}


@keras.saving.register_keras_serializable(package="mtl_keras")
class Tagging(Task):
    """One of `num_tags` tags per token (sequence labelling: NER, POS, ...).

    Labels: integer tag ids of shape `(batch, seq_len)`. Head: Dense(num_tags,
    softmax) applied to every token of a `(batch, seq_len, features)` tensor,
    giving `(batch, seq_len, num_tags)`. Default loss: sparse categorical
    cross-entropy per token. Metric: token accuracy. Padding and missing
    tokens (any negative label, NaN, or `pad_label`) are masked out of both
    loss and metrics: the task loss is the mean over the labelled tokens of
    the batch, so a long sentence weighs more than a short one.

    Args:
        name: output name.
        num_tags: number of tags (>= 2).
        pad_label: the label marking padding; negative (default -1), or
            >= num_tags if your pipeline pads with an out-of-range id. A value
            in [0, num_tags) is rejected since it would hide a real tag.
        weight, loss, metrics: see `Task`.

    Example:
    >>> task = Tagging("ner", num_tags=9)
    >>> task.units, task.pad_label
    (9, -1)
    """

    activation = "softmax"
    label_dtype = "int32"
    per_token = True

    def __init__(self, name: str, num_tags: int, pad_label: int = -1, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.num_tags = _positive_int(num_tags, "num_tags", name, minimum=2)
        if isinstance(pad_label, bool) or not isinstance(pad_label, int):
            raise ValueError(f"Task {name!r}: `pad_label` must be an integer, got {pad_label!r}.")
        if 0 <= pad_label < num_tags:
            raise ValueError(
                f"Task {name!r}: `pad_label` {pad_label} is a real tag id (0..{num_tags - 1}); "
                "use a negative value such as -1."
            )
        self.pad_label = pad_label

    @property
    def units(self) -> int:
        return self.num_tags

    @property
    def label_contract(self) -> str:  # type: ignore[override]
        return (
            f"integer tag ids in [0, {self.num_tags}) (a negative id, NaN or pad_label "
            f"{self.pad_label} marks padding)"
        )

    def check_labels(self, y: Any) -> Any:
        y = ops.convert_to_tensor(y)
        pad = ops.equal(ops.cast(y, "float32"), float(self.pad_label))
        return ops.logical_and(_invalid_ids(y, self.num_tags), ops.logical_not(pad))

    def prepare_labels(self, y: Any, y_pred: Any) -> tuple[Any, Any]:
        """Returns (tag ids with padding set to 0, per-token mask (batch, seq_len))."""
        y = ops.convert_to_tensor(y)
        if len(y.shape) == len(y_pred.shape):
            y = ops.squeeze(y, -1)
        in_range = _valid_ids(y, self.num_tags)
        if "float" in str(y.dtype):
            y = ops.where(in_range, y, -ops.ones_like(y))
        y = ops.cast(y, "int32")
        valid = ops.logical_and(in_range, y != self.pad_label)
        y_safe = ops.where(valid, y, ops.zeros_like(y))
        return y_safe, ops.cast(valid, "float32")

    def per_sample_loss(self, y_safe: Any, y_pred: Any) -> Any:
        """Per-token loss, shape (batch, seq_len): reduced with the token mask."""
        return ops.cast(self.loss_fn()(y_safe, ops.cast(y_pred, "float32")), "float32")

    def describe_output(self) -> str:
        n = self.num_tags
        return f"per-token tag probabilities (softmax over {n} tags), shape (batch, seq_len, {n}); argmax is the predicted tag id"

    def default_loss(self) -> Any:
        return keras.losses.SparseCategoricalCrossentropy()

    def accuracy_metric(self) -> keras.metrics.Metric:
        return keras.metrics.SparseCategoricalAccuracy(name="token_accuracy")

    def default_metrics(self) -> list[Any]:
        return ["accuracy"]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_tags": self.num_tags, "pad_label": self.pad_label}


def _invalid_binary(y: Any) -> Any:
    """True where a 0/1 label is neither 0, 1, NaN nor negative (missing)."""
    y = ops.cast(ops.convert_to_tensor(y), "float32")
    missing = ops.logical_or(ops.isnan(y), y < 0.0)
    valid = ops.logical_or(ops.equal(y, 0.0), ops.equal(y, 1.0))
    return ops.logical_not(ops.logical_or(missing, valid))


def _valid_ids(y: Any, num: int) -> Any:
    """True where an id is usable: integral and in [0, num)."""
    if "float" in str(y.dtype):
        f = ops.cast(y, "float32")
        # NaN and ±Inf fail every comparison below.
        return ops.logical_and(
            ops.logical_and(f >= 0.0, f < float(num)), ops.equal(f, ops.floor(f))
        )
    return ops.logical_and(y >= 0, y < num)


def _invalid_ids(y: Any, num: int) -> Any:
    """True where an id is neither usable nor a missing marker (negative, NaN)."""
    y = ops.convert_to_tensor(y)
    if "float" in str(y.dtype):
        f = ops.cast(y, "float32")
        missing = ops.logical_or(ops.isnan(f), f < 0.0)
    else:
        missing = y < 0
    return ops.logical_not(ops.logical_or(missing, _valid_ids(y, num)))


_BOX_LOSSES = ("giou", "iou")


@keras.saving.register_keras_serializable(package="mtl_keras")
class BoxRegression(Task):
    """One bounding box per row, in normalized coordinates.

    Head: `boxes.BoxHead`, Dense(4, sigmoid) so every coordinate lies in
    [0, 1], with the corners sorted in "xyxy" format, so every output is a
    valid box. Default loss: `1 - GIoU` (`loss="giou"`) or `1 - IoU`
    (`loss="iou"`; no gradient for non-overlapping boxes); any other Keras
    loss is accepted too (e.g. "huber"). Metric: mean IoU. Missing label: a
    row containing NaN.

    Args:
        name: output name.
        box_format: "xyxy" (corners), "xywh" (top-left corner, width, height)
            or "cxcywh" (center, width, height); labels and predictions use it.
        loss: "giou", "iou", or a Keras loss overriding them.
        weight, metrics: see `Task`.

    Example:
    >>> task = BoxRegression("bbox", box_format="cxcywh", loss="iou")
    >>> task.units, task.loss
    (4, 'iou')
    """

    activation = "sigmoid"

    def __init__(
        self, name: str, box_format: str = "xyxy", loss: Any = "giou", **kwargs: Any
    ) -> None:
        if box_format not in BOX_FORMATS:
            raise ValueError(
                f"Task {name!r}: `box_format` must be one of {BOX_FORMATS}, got {box_format!r}."
            )
        if loss is None:
            loss = "giou"
        if isinstance(loss, str) and loss not in _BOX_LOSSES:
            try:
                keras.losses.get(loss)
            except Exception as err:
                raise ValueError(
                    f"Task {name!r}: `loss` must be one of {_BOX_LOSSES} or a Keras loss, "
                    f"got {loss!r}."
                ) from err
        super().__init__(name, loss=loss, **kwargs)
        self.box_format = box_format

    @property
    def units(self) -> int:
        return 4

    def output_layer(self, name: str | None = None) -> keras.layers.Layer:
        return BoxHead(self.box_format, name=name or self.name)

    def describe_output(self) -> str:
        return (
            f"one normalized box per row in {self.box_format!r} format (sigmoid), shape (batch, 4)"
        )

    def default_loss(self) -> Any:
        return BoxLoss("giou", self.box_format)

    def loss_fn(self) -> Any:
        if self.loss in _BOX_LOSSES:
            return BoxLoss(self.loss, self.box_format).call
        return super().loss_fn()

    def default_metrics(self) -> list[Any]:
        return [BoxIoU(self.box_format, name="iou")]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "box_format": self.box_format}
