"""The toy two-task problem most tests train on."""

from __future__ import annotations

import os
from typing import Any

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


def runaway_uncertainty_model() -> tuple[Any, Any, dict[str, Any]]:
    """Uncertainty weighting with too large a learning rate (SGD 10): the
    dwell task's log-variance runs to its bound (issue #13, item 9).
    Returns `(model, x, y)`, compiled, seeded."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 8)).astype("float32")
    y = {"click": (x[:, 0] > 0).astype("float32"), "dwell": (20.0 * x[:, 1]).astype("float32")}
    keras.utils.set_random_seed(0)
    tasks = [mk.Binary("click"), mk.Regression("dwell")]
    model = mk.builders.shared_bottom(
        keras.Input((8,), name="x"), tasks, trunk_units=(16,), tower_units=(8,)
    )
    model.compile(
        keras.optimizers.SGD(10.0), weighting="uncertainty", metrics={"click": [], "dwell": []}
    )
    return model, x, y
