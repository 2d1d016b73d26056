"""A synthetic two-task tabular problem whose relevant features are known."""

from __future__ import annotations

import functools

import keras
import numpy as np

import mtl_keras as mk
from mtl_keras.layers import TabularEncoder


def data(n: int = 2000, seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """`alpha` depends on num_a and cat_c; `beta` on num_b, num_a (and a little on
    log(amount)); the noise features are noise."""
    rng = np.random.default_rng(seed)
    x = {
        "num_a": rng.normal(size=n).astype("float32"),
        "num_b": rng.normal(5.0, 2.0, size=n).astype("float32"),
        "num_noise": rng.normal(size=n).astype("float32"),
        "cat_c": rng.choice(["x", "y", "z"], size=n),
        "cat_noise": rng.choice(["p", "q"], size=n),
        # Heavy-tailed, log-transformed by the encoder (IG runs in log space).
        "amount": rng.lognormal(2.0, 2.0, size=n).astype("float32"),
    }
    shift = np.select([x["cat_c"] == "x", x["cat_c"] == "y"], [2.5, -2.5], 0.0)
    y = {
        "alpha": (2.0 * x["num_a"] + shift > 0).astype("float32"),
        "beta": (
            1.5 * (x["num_b"] - 5.0) / 2.0 + 0.5 * x["num_a"] + 0.15 * np.log1p(x["amount"])
        ).astype("float32"),
    }
    return x, y


def model(x: dict[str, np.ndarray], seed: int = 0) -> mk.MultiTaskModel:
    keras.utils.set_random_seed(seed)
    encoder = TabularEncoder.adapt(
        x, categorical=["cat_c", "cat_noise"], numeric=["num_a", "num_b", "num_noise", "amount"],
        log_features=["amount"], embedding_dim=4,
    )  # fmt: skip
    tasks = [mk.Binary("alpha"), mk.Regression("beta")]
    return mk.builders.shared_bottom(
        encoder.inputs(), tasks, trunk_units=(32,), tower_units=(16,), encoder=encoder
    )


@functools.lru_cache(maxsize=1)
def trained() -> tuple[mk.MultiTaskModel, dict, dict]:
    """Trained once per test session (a few seconds)."""
    x, y = data()
    m = model(x)
    m.compile(keras.optimizers.Adam(0.01), weighting="static")
    m.fit(x, y, batch_size=128, epochs=15, verbose=0)
    return m, x, y
