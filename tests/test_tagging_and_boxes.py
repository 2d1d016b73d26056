"""Tagging (per-token masked loss) and BoxRegression (IoU / GIoU) task specs."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import mtl_keras as mk
from mtl_keras.boxes import BoxIoU, BoxLoss, iou_and_giou, to_xyxy


def _tagging_model(num_tags: int = 3, seq_len: int = 5) -> mk.MultiTaskModel:
    keras.utils.set_random_seed(0)
    x = keras.Input((seq_len, 4), name="x")
    h = keras.layers.Dense(8, activation="relu")(x)
    tasks = [mk.Tagging("tags", num_tags), mk.Binary("flag")]
    outputs = {
        "tags": tasks[0].head(h),
        "flag": tasks[1].head(keras.layers.GlobalAveragePooling1D()(h)),
    }
    model = mk.MultiTaskModel(x, outputs, tasks=tasks)
    model.compile("adam", weighting="static")
    return model


def test_tagging_masked_token_loss_matches_hand_computation():
    model = _tagging_model()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 5, 4)).astype("float32")
    tags = np.array([[0, 1, 2, -1, -1], [2, 2, -1, -1, -1], [1, 0, 1, 0, 2]], "int32")
    y = {"tags": tags, "flag": np.array([1, 0, 1], "float32")}
    pred = model(x, training=False)
    losses, prepared = model._task_losses(y, pred, None)
    probs = keras.ops.convert_to_numpy(pred["tags"])
    # Mean of -log p(true tag) over the 10 non-pad tokens only.
    nll = [-np.log(probs[i, j, tags[i, j]]) for i in range(3) for j in range(5) if tags[i, j] >= 0]
    assert len(nll) == 10
    np.testing.assert_allclose(float(losses[0]), np.mean(nll), rtol=1e-5)
    mask = prepared[0].mask
    assert tuple(mask.shape) == (3, 5)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(mask), (tags >= 0).astype("float32"))

    # Changing predictions at padded positions cannot change the loss: pad
    # labels are masked, not replaced by a class that is then trained.
    pred2 = dict(pred)
    noise = np.where((tags < 0)[..., None], np.float32(1 / 3), probs)
    pred2["tags"] = tf.constant(noise)
    losses2, _ = model._task_losses(y, pred2, None)
    np.testing.assert_allclose(float(losses2[0]), float(losses[0]), rtol=1e-6)


def test_tagging_per_row_sample_weight_broadcasts_over_tokens():
    model = _tagging_model()
    x = np.random.default_rng(1).normal(size=(2, 5, 4)).astype("float32")
    tags = np.array([[0, 1, -1, -1, -1], [2, 2, 2, 1, -1]], "int32")
    y = {"tags": tags, "flag": np.array([1, 0], "float32")}
    pred = model(x, training=False)
    probs = keras.ops.convert_to_numpy(pred["tags"])
    losses, _ = model._task_losses(y, pred, {"tags": np.array([1.0, 0.0], "float32")})
    expected = np.mean([-np.log(probs[0, j, tags[0, j]]) for j in range(2)])
    np.testing.assert_allclose(float(losses[0]), expected, rtol=1e-5)


def test_tagging_token_accuracy_ignores_padding_and_fit_runs():
    model = _tagging_model()
    x = np.random.default_rng(2).normal(size=(8, 5, 4)).astype("float32")
    tags = np.random.default_rng(3).integers(0, 3, size=(8, 5)).astype("int32")
    tags[:, 3:] = -1
    y = {"tags": tags, "flag": (x[:, 0, 0] > 0).astype("float32")}
    hist = model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(hist.history["tags_loss"][0])
    result = model.evaluate(x, y, verbose=0, return_dict=True)
    pred = np.argmax(model.predict(x, verbose=0)["tags"], axis=-1)
    hand = np.mean(pred[:, :3] == tags[:, :3])
    np.testing.assert_allclose(result["tags_token_accuracy"], hand, atol=1e-6)


def test_tagging_float_labels_with_nan_are_masked():
    task = mk.Tagging("tags", 3)
    y = np.array([[0.0, np.nan, 2.0]], "float32")
    y_safe, mask = task.prepare_labels(y, tf.zeros((1, 3, 3)))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(mask), [[1, 0, 1]])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(y_safe), [[0, 0, 2]])


def test_tagging_out_of_range_pad_label():
    task = mk.Tagging("tags", 3, pad_label=3)
    _, mask = task.prepare_labels(np.array([[0, 3, 1, -1]]), tf.zeros((1, 4, 3)))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(mask), [[1, 0, 1, 0]])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_tags": 1}, "num_tags"),
        ({"num_tags": 2.5}, "num_tags"),
        ({"num_tags": 5, "pad_label": 0}, "pad_label"),
        ({"num_tags": 5, "pad_label": "x"}, "pad_label"),
        ({"num_tags": 5, "weight": -1.0}, "weight"),
    ],
)
def test_tagging_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mk.Tagging("tags", **kwargs)


def test_tagging_and_box_config_round_trip():
    for task in (
        mk.Tagging("ner", 9, pad_label=-100, weight=0.5),
        mk.BoxRegression("box", box_format="cxcywh", loss="iou"),
        mk.BoxRegression("box2", loss="huber"),
    ):
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(task))
        assert restored == task


# ------------------------------------------------------------------ boxes
def _giou_loss(a, b, box_format="xyxy"):
    return keras.ops.convert_to_numpy(
        BoxLoss("giou", box_format).call(tf.constant([a], tf.float32), tf.constant([b], tf.float32))
    )[0]


def test_giou_identical_boxes():
    assert _giou_loss([0.1, 0.2, 0.5, 0.6], [0.1, 0.2, 0.5, 0.6]) == pytest.approx(0.0, abs=1e-5)


def test_giou_disjoint_boxes():
    # Areas 1 and 1, enclosing box [0,0,3,3] area 9, union 2:
    # GIoU = 0 - (9 - 2) / 9, loss = 1 + 7/9.
    assert _giou_loss([0, 0, 1, 1], [2, 2, 3, 3]) == pytest.approx(1 + 7 / 9, abs=1e-5)
    # Touching edges: IoU 0, enclosing box equals union -> loss exactly 1.
    assert _giou_loss([0, 0, 1, 1], [1, 0, 2, 1]) == pytest.approx(1.0, abs=1e-5)


def test_giou_nested_boxes():
    # Inner box of area 0.25 inside unit box: IoU = 0.25, enclosing = union.
    assert _giou_loss([0, 0, 1, 1], [0.25, 0.25, 0.75, 0.75]) == pytest.approx(0.75, abs=1e-5)


def test_giou_partial_overlap_and_iou_loss():
    a, b = [0, 0, 2, 2], [1, 1, 3, 3]
    # inter 1, union 7, enclosing 9: IoU = 1/7, GIoU = 1/7 - 2/9.
    iou, giou = iou_and_giou([a], [b])
    assert float(iou[0]) == pytest.approx(1 / 7, abs=1e-6)
    assert float(giou[0]) == pytest.approx(1 / 7 - 2 / 9, abs=1e-6)
    iou_loss = BoxLoss("iou").call(tf.constant([a], tf.float32), tf.constant([b], tf.float32))
    assert float(iou_loss[0]) == pytest.approx(1 - 1 / 7, abs=1e-6)


def test_box_formats_agree():
    xyxy = [0.2, 0.1, 0.6, 0.5]
    xywh = [0.2, 0.1, 0.4, 0.4]
    cxcywh = [0.4, 0.3, 0.4, 0.4]
    for fmt, box in (("xywh", xywh), ("cxcywh", cxcywh)):
        np.testing.assert_allclose(to_xyxy([box], fmt).numpy()[0], xyxy, atol=1e-6)
        assert _giou_loss(box, box, fmt) == pytest.approx(0.0, abs=1e-5)
    # Swapped corners are reordered into a valid box.
    np.testing.assert_allclose(to_xyxy([[0.6, 0.5, 0.2, 0.1]]).numpy()[0], xyxy, atol=1e-6)


def test_giou_has_gradient_for_disjoint_boxes():
    pred = tf.Variable([[0.7, 0.7, 0.9, 0.9]])
    with tf.GradientTape() as tape:
        loss = BoxLoss("giou").call(tf.constant([[0.0, 0.0, 0.2, 0.2]]), pred)
    grad = tape.gradient(loss, pred)
    assert np.all(np.isfinite(grad.numpy())) and np.abs(grad.numpy()).sum() > 0


def test_box_iou_metric_and_missing_rows():
    metric = BoxIoU()
    metric.update_state([[0.0, 0.0, 1.0, 1.0]], [[0.0, 0.0, 1.0, 0.5]])
    assert float(metric.result()) == pytest.approx(0.5, abs=1e-5)

    task = mk.BoxRegression("box")
    y = np.array([[0.1, 0.1, 0.5, 0.5], [np.nan] * 4], "float32")
    y_safe, mask = task.prepare_labels(y, tf.zeros((2, 4)))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(mask), [1, 0])
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(y_safe)))


def test_box_regression_fit_with_missing_labels():
    keras.utils.set_random_seed(0)
    x_in = keras.Input((6,), name="x")
    h = keras.layers.Dense(8, activation="relu")(x_in)
    tasks = [mk.BoxRegression("box"), mk.Regression("r")]
    model = mk.MultiTaskModel(x_in, {t.name: t.head(h) for t in tasks}, tasks=tasks)
    model.compile("adam")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 6)).astype("float32")
    lo = rng.uniform(0, 0.5, size=(16, 2))
    boxes = np.concatenate([lo, lo + 0.3], axis=1).astype("float32")
    boxes[::3] = np.nan
    hist = model.fit(x, {"box": boxes, "r": x[:, 0]}, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(hist.history["box_loss"][0])
    assert 0.0 <= hist.history["box_iou"][0] <= 1.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"box_format": "yxyx"}, "box_format"),
        ({"loss": "diou"}, "loss"),
        ({"loss": "giou", "weight": float("nan")}, "weight"),
    ],
)
def test_box_regression_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mk.BoxRegression("box", **kwargs)
    with pytest.raises(ValueError, match="kind"):
        BoxLoss("l1")


def test_box_head_outputs_valid_boxes_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype("float32")
    task = mk.BoxRegression("box")
    model = mk.builders.shared_bottom(keras.Input((5,)), [task], trunk_units=(8,), tower_units=())
    model.compile("adam")
    boxes = model.predict(x * 10, verbose=0)["box"]
    assert boxes.shape == (64, 4)
    assert (boxes >= 0).all() and (boxes <= 1).all()
    assert (boxes[:, 0] <= boxes[:, 2]).all() and (boxes[:, 1] <= boxes[:, 3]).all()
    path = str(tmp_path / "m.keras")
    model.save(path)
    np.testing.assert_array_equal(
        keras.saving.load_model(path).predict(x, verbose=0)["box"],
        model.predict(x, verbose=0)["box"],
    )
