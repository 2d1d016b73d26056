"""Small models and data shared by the reliability tests."""

from __future__ import annotations

import keras
import numpy as np

import mtl_keras as mk

TASKS = {
    "click": lambda: mk.Binary("click"),
    "grade": lambda: mk.Multiclass("grade", num_classes=3),
    "dwell": lambda: mk.Regression("dwell"),
}


def tasks() -> list[mk.tasks.Task]:
    return [make() for make in TASKS.values()]


def named_model(seed: int = 0, string_feature: bool = False, **compile_kwargs):
    """Three tasks over named scalar features `age`, `score` (and string `city`)."""
    keras.utils.set_random_seed(seed)
    inputs = {"age": keras.Input((), name="age"), "score": keras.Input((), name="score")}
    parts = [keras.layers.Reshape((1,))(inputs["age"]), keras.layers.Reshape((1,))(inputs["score"])]
    if string_feature:
        inputs["city"] = keras.Input((), dtype="string", name="city")
        lookup = keras.layers.StringLookup(vocabulary=["paris", "lyon"], output_mode="one_hot")
        parts.append(lookup(inputs["city"]))
    h = keras.layers.Concatenate()(parts)
    h = keras.layers.Dense(8, activation="relu", name="trunk")(h)
    specs = tasks()
    model = mk.MultiTaskModel(inputs, {t.name: t.head(h) for t in specs}, tasks=specs)
    model.compile(keras.optimizers.Adam(1e-2), **compile_kwargs)
    return model


def data(n: int = 32, seed: int = 0, string_feature: bool = False):
    rng = np.random.default_rng(seed)
    x = {
        "age": rng.normal(size=n).astype("float32"),
        "score": rng.normal(size=n).astype("float32"),
    }
    if string_feature:
        x["city"] = rng.choice(["paris", "lyon"], size=n)
    y = {
        "click": (x["age"] > 0).astype("float32"),
        "grade": rng.integers(0, 3, size=n).astype("int32"),
        "dwell": (x["score"] * 2).astype("float32"),
    }
    return x, y
