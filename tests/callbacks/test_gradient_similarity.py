"""TaskTensorBoard's gradient-similarity and gate-utilisation probes."""

from __future__ import annotations

import glob
import os
from collections import defaultdict

import keras
import numpy as np
import pytest
import tensorflow as tf
from _support import toy_data, toy_model

import mtl_keras as mk
from mtl_keras.builders.gates import gate_utilisation
from mtl_keras.callbacks import TaskTensorBoard
from mtl_keras.callbacks.monitoring import heatmap_rgb


def read_events(run_dir: str) -> tuple[dict[str, dict[int, float]], dict[str, dict[int, bytes]]]:
    """(scalars tag -> {step: value}, images tag -> {step: encoded png})."""
    scalars: dict[str, dict[int, float]] = defaultdict(dict)
    images: dict[str, dict[int, bytes]] = defaultdict(dict)
    for path in sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                plugin = value.metadata.plugin_data.plugin_name
                if plugin == "scalars":
                    scalars[value.tag][event.step] = float(tf.make_ndarray(value.tensor))
                elif plugin == "images":
                    images[value.tag][event.step] = tf.make_ndarray(value.tensor)[2]
    return dict(scalars), dict(images)


def similarity_batch():
    x, y = toy_data(48, seed=5)
    y["click"][:6] = np.nan  # unlabelled rows must not enter the click gradient
    return x, y


def direct_similarity(model, x, y) -> float:
    """Cosine of the two tasks' trunk gradients, computed by hand."""
    trunk = model.get_layer("trunk").trainable_variables
    keep = ~np.isnan(y["click"])
    with tf.GradientTape(persistent=True) as tape:
        pred = model(x, training=False)
        click = tf.reduce_mean(
            keras.losses.binary_crossentropy(y["click"][keep][:, None], pred["click"][keep])
        )
        dwell = tf.reduce_mean((pred["dwell"][:, 0] - y["dwell"]) ** 2)
    g1 = np.concatenate([np.ravel(g) for g in tape.gradient(click, trunk)])
    g2 = np.concatenate([np.ravel(g) for g in tape.gradient(dwell, trunk)])
    return float(g1 @ g2 / np.linalg.norm(g1) / np.linalg.norm(g2))


def test_gradient_similarity_scalars_and_heatmap(tmp_path):
    model = toy_model()
    x, y = toy_data(256)
    batch = similarity_batch()
    tb = TaskTensorBoard(
        str(tmp_path), write_graph=False, gradient_similarity_freq=4, similarity_data=batch
    )
    # 4 steps per epoch, 2 epochs: probes at steps 4 and 8 (the last step).
    model.fit(x, y, epochs=2, batch_size=64, callbacks=[tb], verbose=0)
    scalars, images = read_events(str(tmp_path / "train"))
    tag = "gradient_similarity/click_vs_dwell"
    assert sorted(scalars[tag]) == [4, 8]
    assert scalars[tag][8] == pytest.approx(direct_similarity(model, *batch), abs=1e-5)
    assert sorted(images["gradient_similarity/heatmap"]) == [4, 8]
    png = tf.io.decode_png(images["gradient_similarity/heatmap"][8]).numpy()
    assert png.shape == (48, 48, 3)
    # Epoch scalars are untouched.
    assert "click/loss" in scalars and "epoch_loss" in scalars


def test_heatmap_colours():
    img = heatmap_rgb(np.array([[1.0, -1.0], [0.0, np.nan]]), cell=4)
    assert img.shape == (8, 8, 3) and img.dtype == np.uint8
    assert img[1, 1].tolist() == [255, 0, 0]  # +1 red
    assert img[1, 5].tolist() == [0, 0, 255]  # -1 blue
    assert img[5, 1].tolist() == [255, 255, 255]  # 0 white
    assert img[5, 5].tolist() == [153, 153, 153]  # NaN grey


def test_gate_utilisation_logged_for_mmoe(tmp_path):
    keras.utils.set_random_seed(0)
    tasks = [mk.Binary("click"), mk.Regression("dwell")]
    model = mk.builders.mmoe(
        keras.Input((8,)), tasks, num_experts=3, expert_units=(8,), tower_units=()
    )
    model.compile("adam")
    x, y = toy_data(128)
    batch = similarity_batch()
    tb = TaskTensorBoard(
        str(tmp_path), write_graph=False, gradient_similarity_freq=2, similarity_data=batch
    )
    model.fit(x, y, epochs=2, batch_size=64, callbacks=[tb], verbose=0)
    scalars, _ = read_events(str(tmp_path / "train"))
    expected = gate_utilisation(model, batch[0])
    for key in ("click", "dwell"):
        values = [scalars[f"gates/{key}/expert_{i}"][1] for i in range(3)]
        np.testing.assert_allclose(values, expected[key], rtol=1e-5)
    assert "gradient_similarity/click_vs_dwell" in scalars


def test_no_gates_no_gate_scalars_and_bad_args(tmp_path):
    model = toy_model()
    x, y = toy_data(64)
    tb = TaskTensorBoard(str(tmp_path), write_graph=False, gate_data=x[:16])
    model.fit(x, y, epochs=1, batch_size=64, callbacks=[tb], verbose=0)
    scalars, _ = read_events(str(tmp_path / "train"))
    assert not [t for t in scalars if t.startswith("gates/")]
    with pytest.raises(ValueError, match="similarity_data"):
        TaskTensorBoard(str(tmp_path), gradient_similarity_freq=5)
    with pytest.raises(ValueError, match="non-negative int"):
        TaskTensorBoard(str(tmp_path), gradient_similarity_freq=-1, similarity_data=(x, y))
