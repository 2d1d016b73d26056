"""The toy two-task problem most tests train on."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

import mtl_keras as mk


def toy_data(n: int = 256, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Two related tasks on 8 Gaussian features: a binary and a regression."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    y = {
        "click": (x[:, 0] + 0.5 * x[:, 1] > 0).astype("float32"),
        "dwell": (2.0 * x[:, 1] - x[:, 2]).astype("float32"),
    }
    return x, y


def toy_model(weighting: str | object = "static", seed: int = 0, **compile_kwargs):
    keras.utils.set_random_seed(seed)
    tasks = [mk.Binary("click"), mk.Regression("dwell")]
    model = mk.builders.shared_bottom(
        keras.Input((8,), name="x"), tasks, trunk_units=(16,), tower_units=(8,)
    )
    model.compile(keras.optimizers.Adam(0.01), weighting=weighting, **compile_kwargs)
    return model
