"""Reusable Keras layers that builders compose (each has `get_config`)."""

from mtl_keras.layers.mlp import MLP
from mtl_keras.layers.tabular_encoder import TabularEncoder

__all__ = ["MLP", "TabularEncoder"]
