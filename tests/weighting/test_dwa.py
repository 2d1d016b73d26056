"""DWA: weights from epoch-average losses, epoch detection in `fit`."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from _support import toy_data, toy_model

import mtl_keras as mk
from mtl_keras.weighting import DWA


def _built(**kwargs) -> DWA:
    strategy = DWA(**kwargs)
    strategy.build_for_tasks([mk.Binary("a"), mk.Regression("b")])
    return strategy


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def test_weights_from_epoch_losses() -> None:
    dwa = _built()
    epochs = [
        [[1.0, 2.0], [3.0, 4.0]],  # means [2, 3]
        [[1.0, 0.0], [1.0, 3.0]],  # task b unlabelled in one batch: means [1, 3]
    ]
    for steps in epochs:
        for losses in steps:
            _, w = dwa.combine(tf.constant(losses), training=True)
            np.testing.assert_allclose(w, [1.0, 1.0])  # first two epochs: uniform
        dwa.end_epoch()
    np.testing.assert_allclose(dwa.prev_losses, [1.0, 3.0])
    np.testing.assert_allclose(dwa.prev2_losses, [2.0, 3.0])
    total, w = dwa.combine(tf.constant([0.5, 2.0]), training=False)
    expected = 2 * _softmax(np.array([1.0 / 2.0, 3.0 / 3.0]) / 2.0)
    np.testing.assert_allclose(w, expected, rtol=1e-6)
    np.testing.assert_allclose(total, expected @ [0.5, 2.0], rtol=1e-6)
    # A second end_epoch without training steps is a no-op.
    dwa.end_epoch()
    np.testing.assert_allclose(dwa.epochs_seen, 2.0)


def test_temperature_and_evaluation_do_not_touch_state() -> None:
    dwa = _built(temperature=0.5)
    dwa.prev_losses.assign([1.0, 1.0])
    dwa.prev2_losses.assign([2.0, 1.0])
    dwa.epochs_seen.assign(2.0)
    _, w = dwa.combine(tf.constant([1.0, 1.0]), training=False)
    np.testing.assert_allclose(w, 2 * _softmax(np.array([0.5, 1.0]) / 0.5), rtol=1e-6)
    np.testing.assert_allclose(dwa.loss_counts, [0.0, 0.0])


def test_steps_per_epoch_in_graph() -> None:
    dwa = _built(steps_per_epoch=2)
    step = tf.function(lambda losses: dwa.combine(losses, training=True)[1], jit_compile=True)
    for losses in ([1.0, 2.0], [3.0, 4.0], [1.0, 3.0], [1.0, 3.0]):
        step(tf.constant(losses))
    np.testing.assert_allclose(dwa.epochs_seen, 2.0)
    w = step(tf.constant([1.0, 1.0]))
    np.testing.assert_allclose(w, 2 * _softmax(np.array([0.5, 1.0]) / 2.0), rtol=1e-6)


@pytest.mark.parametrize("validation", [False, True], ids=["train", "val"])
def test_fit_closes_epochs_at_metric_reset(validation: bool) -> None:
    x, y = toy_data(64)
    model = toy_model(weighting="dwa", metrics={"click": [], "dwell": []})
    val = (x, y) if validation else None
    h = model.fit(x, y, batch_size=32, epochs=3, verbose=0, validation_data=val).history
    dwa = model.weighting
    # Without validation, epoch t closes when epoch t+1 starts (epoch 3 is
    # still open); with it, when validation of epoch t starts, and the reset
    # at the next epoch's start finds nothing to close.
    closed = 3 if validation else 2
    np.testing.assert_allclose(dwa.epochs_seen, closed)
    losses = np.array([h["click_loss"], h["dwell_loss"]]).T  # (epoch, task)
    np.testing.assert_allclose(dwa.prev_losses, losses[closed - 1], rtol=1e-5)
    np.testing.assert_allclose(dwa.prev2_losses, losses[closed - 2], rtol=1e-5)
    expected = 2 * _softmax(losses[1] / losses[0] / 2.0)
    np.testing.assert_allclose([h["click_weight"][2], h["dwell_weight"][2]], expected, rtol=1e-5)
    np.testing.assert_allclose(h["dwell_weight"][:2], [1.0, 1.0])
