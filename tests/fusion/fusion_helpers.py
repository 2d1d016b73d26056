"""Small synthetic three-modality data and fusion models for the fusion tests."""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np

import mtl_keras as mk
from mtl_keras.builders.fusion import Modality
from mtl_keras.builders.fusion_encoders import image_cnn, text_bilstm
from mtl_keras.layers import ModalityTowers, TabularEncoder

N = 24
IMAGE = (6, 6, 1)
STEPS, VOCAB = 4, 12
TASKS = [mk.Binary("a"), mk.Regression("b")]
ALL = ("tabular", "image", "text")


def data(n: int = N, seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    x = {
        "city": rng.choice(["paris", "rome", "oslo"], n),
        "age": rng.normal(40, 10, n).astype("float32"),
        "image": rng.random((n, *IMAGE)).astype("float32"),
        "text": rng.integers(1, VOCAB, (n, STEPS)).astype("int32"),
    }
    for m in ALL:
        x[f"{m}_mask"] = np.ones(n, "float32")
    y = {
        "a": (x["image"].mean(axis=(1, 2, 3)) > 0.5).astype("float32")[:, None],
        "b": (x["text"].mean(axis=1, keepdims=True) / VOCAB + x["age"][:, None] / 50).astype(
            "float32"
        ),
    }
    return x, y


class Encoders:
    """One instance of every modality encoder (and its inputs), so that two
    fusion models built from it share the encoders' weights."""

    def __init__(self) -> None:
        x, _ = data()
        self.tabular = TabularEncoder.adapt(x, categorical=["city"], numeric=["age"])
        self.tabular_inputs = self.tabular.inputs()
        self.image = image_cnn(IMAGE, (3,), units=8, name="image_cnn")
        self.image_input = keras.Input(IMAGE, name="image")
        self.text = text_bilstm(VOCAB, 4, 3, name="text_bilstm")
        self.text_input = keras.Input((STEPS,), dtype="int32", name="text")

    def modalities(self, names: Sequence[str] = ALL) -> list[Modality]:
        every = {
            "tabular": Modality("tabular", self.tabular_inputs, self.tabular),
            "image": Modality("image", self.image_input, self.image),
            "text": Modality("text", self.text_input, self.text),
        }
        return [every[n] for n in names]


def build(encoders: Encoders, fusion: str, names: Sequence[str] = ALL, **kwargs: Any):
    kwargs = {"fusion_dim": 5, "trunk_units": (6,), "tower_units": (4,), **kwargs}
    return mk.builders.fusion(
        encoders.modalities(names), TASKS, fusion=fusion, name=f"{fusion}_{len(names)}", **kwargs
    )


def copy_weights(full: keras.Model, sub: keras.Model, kept: Sequence[int]) -> None:
    """Gives `sub` (built over the modalities `kept`, indices into the full
    model's modalities) the weights of `full`, layer by layer name."""
    for layer in sub.layers:
        if not layer.weights or layer.name not in [la.name for la in full.layers]:
            continue
        source = full.get_layer(layer.name)
        if isinstance(layer, ModalityTowers):
            for k, tower in zip(kept, layer.towers):
                tower.set_weights(source.towers[k].get_weights())
        elif getattr(layer, "mode", None) == "static":
            layer.set_weights([source.get_weights()[0][list(kept)]])
        else:
            layer.set_weights(source.get_weights())


def without(x: dict[str, np.ndarray], modality: str, inputs: Sequence[str]) -> dict:
    """`x` with `modality` marked missing in every row and its inputs garbled."""
    rng = np.random.default_rng(7)
    x = dict(x)
    for name in inputs:
        v = x[name]
        if v.dtype.kind in "USO":
            x[name] = rng.choice(["zzz", "paris"], len(v))
        elif v.dtype.kind == "i":  # token ids must stay valid embedding rows
            x[name] = rng.integers(0, VOCAB, v.shape).astype(v.dtype)
        else:
            x[name] = (rng.normal(size=v.shape) * 50).astype(v.dtype)
    x[f"{modality}_mask"] = np.zeros(len(x[f"{modality}_mask"]), "float32")
    return x
