"""Property-based fuzzing of labels and features: a clear error naming the
task/feature, or the correct result; never a silent wrong one."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import mtl_keras as mk
from mtl_keras.contracts import LabelError, NonFiniteError, validate_label_array

from ._models import data, named_model

FAST = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
N = 8
SPECIAL = [np.nan, np.inf, -np.inf, -1.0, 0.0, 1.0, 2.0, 0.5, 3.0, 2.5, 1e9]
labels_strategy = hnp.arrays(
    "float32",
    N,
    elements=st.one_of(st.sampled_from(SPECIAL), st.floats(-5, 5, width=32, allow_subnormal=False)),
)


def reference_invalid(task, y):
    """Independent NumPy statement of each task's label contract."""
    y = np.asarray(y, "float64")
    with np.errstate(invalid="ignore"):
        missing = np.isnan(y) | (y < 0)
        if isinstance(task, mk.Binary):
            return ~(missing | (y == 0) | (y == 1))
        if isinstance(task, mk.Multiclass):
            return ~(missing | ((y < task.num_classes) & (y == np.floor(y))))
    return np.isinf(y)


TASKS = [mk.Binary("click"), mk.Multiclass("grade", num_classes=3), mk.Regression("dwell")]
MODES = {
    "eager": lambda f: f,
    "graph": lambda f: tf.function(f),
    "xla": lambda f: tf.function(f, jit_compile=True),
}
# One traced function per task and mode (traced once: fixed shapes).
CHECKS = {(t.name, m): wrap(t.check_labels) for t in TASKS for m, wrap in MODES.items()}


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
@FAST
@given(y=labels_strategy)
def test_check_labels_matches_the_contract_eager_graph_xla(task, y):
    expected = reference_invalid(task, y)
    for name in MODES:
        got = CHECKS[task.name, name](tf.constant(y)).numpy()
        np.testing.assert_array_equal(got, expected, err_msg=name)
    # An invalid label never reaches the loss: it is masked.
    _, mask = task.prepare_labels(tf.constant(y), tf.zeros([N, task.units]))
    assert not np.any(mask.numpy()[expected])
    if expected.any():
        with pytest.raises(LabelError, match=repr(task.name)):
            validate_label_array(task, y)
    else:
        validate_label_array(task, y)


@pytest.fixture(scope="module")
def model():
    return named_model()


def _reference_loss(task, y, pred):
    y, pred = np.asarray(y, "float64"), np.asarray(pred, "float64")
    keep = ~(np.isnan(y) | (y < 0)) if not isinstance(task, mk.Regression) else ~np.isnan(y)
    if not keep.any():
        return 0.0
    y, pred = y[keep], pred[keep]
    eps = 1e-7
    if isinstance(task, mk.Binary):
        p = np.clip(pred[:, 0], eps, 1 - eps)
        return float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))))
    if isinstance(task, mk.Multiclass):
        p = np.clip(pred[np.arange(len(y)), y.astype(int)], eps, 1 - eps)
        return float(np.mean(-np.log(p)))
    return float(np.mean((pred[:, 0] - y) ** 2))


@pytest.mark.parametrize("task_name", ["click", "grade", "dwell"])
@FAST
@given(y=labels_strategy)
def test_evaluate_errors_or_matches_the_masked_mean(model, task_name, y):
    x, labels = data(N)
    labels = dict(labels)
    task = next(t for t in model.tasks if t.name == task_name)
    labels[task_name] = y
    invalid = reference_invalid(task, y)
    if invalid.any():
        with pytest.raises(LabelError, match=repr(task_name)):
            model.evaluate(x, labels, batch_size=N, verbose=0)
        return
    logs = model.evaluate(x, labels, batch_size=N, verbose=0, return_dict=True)
    pred = model.predict(x, batch_size=N, verbose=0)[task_name]
    _, mask = task.prepare_labels(tf.constant(y), tf.constant(pred))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mean of no labelled row
        expected = _reference_loss(task, y, pred)
    if np.isnan(expected) or float(tf.reduce_sum(mask)) == 0.0:
        # No labelled row: the task's loss is NaN (unknown), never a perfect 0.0.
        assert np.isnan(logs[f"{task_name}_loss"])
        return
    assert logs[f"{task_name}_loss"] == pytest.approx(expected, rel=1e-4, abs=1e-5)


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    values=hnp.arrays(
        "float32",
        N,
        elements=st.one_of(st.sampled_from([np.nan, np.inf, -np.inf]), st.floats(-3, 3, width=32)),
    )
)
def test_training_errors_on_nonfinite_features_or_stays_finite(model, values):
    x, labels = data(N)
    x = dict(x, score=values)
    before = model.get_weights()
    if not np.isfinite(values).all():
        with pytest.raises(NonFiniteError, match="'score'"):
            model.fit(x, labels, batch_size=N, epochs=1, verbose=0)
        for a, b in zip(before, model.get_weights()):
            np.testing.assert_array_equal(a, b)
    else:
        model.fit(x, labels, batch_size=N, epochs=1, verbose=0)
        assert all(np.isfinite(w).all() for w in model.get_weights())
