"""Small synthetic two-task problem shared by the pruning tests."""

from __future__ import annotations

import keras
import numpy as np

import mtl_keras as mk


def data(n: int = 512, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    y = {
        "click": (x[:, 0] + 0.5 * x[:, 1] > 0).astype("float32"),
        "dwell": (2.0 * x[:, 1] - x[:, 2]).astype("float32"),
    }
    return x, y


def model(seed: int = 0) -> mk.MultiTaskModel:
    keras.utils.set_random_seed(seed)
    tasks = [mk.Binary("click"), mk.Regression("dwell")]
    return mk.builders.shared_bottom(
        keras.Input((8,)), tasks, trunk_units=(32, 16), tower_units=(16,)
    )
