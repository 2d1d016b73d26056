"""Features by name, DataFrames, per-task masks, warning-free report and fit."""

from __future__ import annotations

import io
import logging
import warnings

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import mtl_keras as mk
from mtl_keras.contracts import InputContractError
from mtl_keras.evaluation import report

from ._models import data, named_model


@pytest.fixture(scope="module")
def model():
    return named_model(string_feature=True)


def test_predictions_do_not_depend_on_feature_order(model):
    x, _ = data(16, string_feature=True)
    reordered = {k: x[k] for k in reversed(list(x))}
    a, b = model.predict(x, verbose=0), model.predict(reordered, verbose=0)
    for task in a:
        np.testing.assert_array_equal(a[task], b[task])


def test_dataframe_accepted_directly_with_pandas_string_columns(model):
    x, y = data(24, string_feature=True)
    frame = pd.DataFrame(x)
    frame["city"] = frame["city"].astype("str")  # pandas 3's string dtype
    from_frame = model.predict(frame, verbose=0)
    from_dict = model.predict(x, verbose=0)
    for task in from_dict:
        np.testing.assert_allclose(from_frame[task], from_dict[task], rtol=1e-6)
    labels = pd.DataFrame(y)
    by_frame = model.evaluate(frame, labels, batch_size=24, verbose=0, return_dict=True)
    by_dict = model.evaluate(x, y, batch_size=24, verbose=0, return_dict=True)
    assert by_frame["loss"] == pytest.approx(by_dict["loss"], rel=1e-6)
    model.fit(frame, labels, batch_size=8, epochs=1, verbose=0)


def test_dataframe_with_extra_columns_names_them(model):
    x, _ = data(8, string_feature=True)
    frame = pd.DataFrame({**x, "click": np.zeros(8)})
    with pytest.raises(InputContractError, match=r"not inputs of the model \['click'\]"):
        model.predict(frame, verbose=0)


def test_sample_weight_for_some_tasks_only_with_numpy_inputs():
    model = named_model()
    x, y = data(32)
    mask = np.tile([1.0, 0.0], 16).astype("float32")
    by_mask = model.evaluate(
        x, y, sample_weight={"click": mask}, batch_size=32, verbose=0, return_dict=True
    )
    marked = dict(y, click=np.where(mask == 0, np.nan, y["click"]))
    by_nan = model.evaluate(x, marked, batch_size=32, verbose=0, return_dict=True)
    for key in ("click_loss", "dwell_loss", "grade_loss"):
        assert by_mask[key] == pytest.approx(by_nan[key], rel=1e-6)
    model.fit(x, y, sample_weight={"click": mask}, batch_size=8, epochs=1, verbose=0)


def test_wrong_mask_shape_in_a_dataset_names_the_task():
    model = named_model()
    x, y = data(16)
    ds = tf.data.Dataset.from_tensor_slices((x, y, {"click": np.ones((16, 3), "float32")}))
    with pytest.raises(InputContractError, match="'click'.*shape"):
        model.fit(ds.batch(8), verbose=0)


def _tf_log():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    tf.get_logger().addHandler(handler)
    return stream, handler


def test_report_on_many_models_prints_no_retracing_warning():
    x = np.random.default_rng(0).random((40, 3)).astype("float32")
    y = {"a": (x[:, 0] > 0.5) * 1.0, "b": x[:, 1]}
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    stream, handler = _tf_log()
    try:
        for _ in range(6):
            model = mk.builders.shared_bottom(
                keras.Input((3,)),
                [mk.Binary("a"), mk.Regression("b")],
                trunk_units=(4,),
                tower_units=(),
            )
            table = report(model, ds)
            assert list(table.index) == ["a", "b"]
            report(model, (x, y), batch_size=16)
    finally:
        tf.get_logger().removeHandler(handler)
    assert "retracing" not in stream.getvalue()


def test_report_rejects_label_keys_that_are_not_tasks():
    model = named_model()
    x, y = data(8)
    with pytest.raises(InputContractError, match="'clicks'"):
        report(model, (x, {**y, "clicks": y["click"]}))
    ds = tf.data.Dataset.from_tensor_slices((x, {**y, "clicks": y["click"]})).batch(4)
    with pytest.raises(ValueError, match="'clicks'"):
        report(model, ds)


def test_fit_on_a_dataset_does_not_trigger_the_shuffle_warning():
    # The README quickstart: model.fit(train_ds, validation_data=val_ds, ...).
    model = named_model()
    x, y = data(16)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(ds, validation_data=ds, epochs=1, verbose=0)
    assert not [w for w in caught if "shuffle" in str(w.message)]


def test_on_batch_methods_have_the_same_checks():
    from mtl_keras.contracts import FeatureError, LabelError, NonFiniteError

    model = named_model()
    x, y = data(8)
    with pytest.raises(LabelError, match="'grade'"):
        model.train_on_batch(x, dict(y, grade=np.full(8, 5)))
    with pytest.raises(FeatureError, match="'zip'"):
        model.predict_on_batch({**x, "zip": np.zeros(8)})
    bad = dict(x, score=np.where(np.arange(8) == 1, np.nan, x["score"]).astype("float32"))
    with pytest.raises(NonFiniteError, match="'score'"):
        model.train_on_batch(bad, y)
    logs = model.test_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"])


def test_validation_data_is_checked_before_training():
    from mtl_keras.contracts import LabelError

    model = named_model()
    x, y = data(8)
    with pytest.raises(LabelError, match="fit validation_data.*'click'"):
        model.fit(x, y, validation_data=(x, dict(y, click=np.full(8, 3.0))), verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 0
