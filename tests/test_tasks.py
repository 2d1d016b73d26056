import keras
import numpy as np
import pytest

import mtl_keras as mk
from mtl_keras.tasks import validate_tasks


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a b", None, 3, "loss", "class"])
def test_bad_task_names_are_rejected(name):
    with pytest.raises(ValueError, match="[Tt]ask name"):
        mk.Binary(name)


def test_duplicate_and_empty_tasks_are_rejected():
    with pytest.raises(ValueError, match="unique.*'a'"):
        validate_tasks([mk.Binary("a"), mk.Regression("a")])
    with pytest.raises(ValueError, match="empty"):
        validate_tasks([])
    with pytest.raises(ValueError, match="Task specs"):
        validate_tasks(["income"])
    with pytest.raises(ValueError, match="not a dict"):
        validate_tasks({"a": mk.Binary("a")})


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: mk.Multiclass("digit", num_classes=1), "'digit'.*num_classes"),
        (lambda: mk.Multiclass("digit", num_classes=2.5), "'digit'.*num_classes"),
        (lambda: mk.Regression("age", units=0), "'age'.*units"),
        (lambda: mk.Multilabel("tags", num_labels=0), "'tags'.*num_labels"),
        (lambda: mk.Binary("click", weight=-1.0), "'click'.*weight"),
        (lambda: mk.Binary("click", weight=float("nan")), "'click'.*weight"),
        (lambda: mk.Binary("click", metrics="auc"), "'click'.*metrics"),
    ],
)
def test_bad_task_arguments_name_the_task(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_heads_are_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        x = keras.Input((4,))
        h = keras.layers.Dense(8)(x)
        assert h.dtype == "float16"
        for task in [mk.Binary("b"), mk.Multiclass("m", 3), mk.Regression("r", 2)]:
            out = task.head(h)
            assert out.dtype == "float32"
            assert out.shape == (None, task.units)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_defaults_per_task_type():
    assert [m.name for m in mk.Binary("inc").build_metrics()] == ["inc_auc", "inc_accuracy"]
    assert [m.name for m in mk.Regression("age").build_metrics()] == ["age_mae", "age_rmse"]
    acc = mk.Multiclass("d", 10).build_metrics()[0]
    assert isinstance(acc, keras.metrics.SparseCategoricalAccuracy) and acc.name == "d_accuracy"
    assert mk.Multiclass("d", 10).label_dtype == "int32"
    assert mk.Binary("b").activation == "sigmoid"


@pytest.mark.parametrize(
    "task, y, expected",
    [
        (mk.Binary("b"), [1.0, np.nan, 0.0, -1.0], [1, 0, 1, 0]),
        (mk.Regression("r"), [1.5, np.nan, -3.0, 0.0], [1, 0, 1, 1]),
        (mk.Multiclass("m", 3), [2, -1, 0, 1], [1, 0, 1, 1]),
        (mk.Multiclass("m", 3), [2.0, np.nan, 0.0, -1.0], [1, 0, 1, 0]),
    ],
)
def test_missing_label_masks(task, y, expected):
    pred = keras.ops.zeros((4, task.units))
    y_safe, mask = task.prepare_labels(np.asarray(y), pred)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(mask), expected)
    assert not np.isnan(keras.ops.convert_to_numpy(y_safe)).any()


def test_task_config_round_trip():
    tasks = [
        mk.Binary("b", weight=2.0, loss="binary_focal_crossentropy"),
        mk.Regression("r", units=3, metrics=["mae"]),
        mk.Multiclass("m", num_classes=4),
        mk.Multilabel("l", num_labels=5),
    ]
    for task in tasks:
        clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(task))
        assert clone == task and type(clone) is type(task)
