"""Architectures: each is a function returning a `MultiTaskModel`."""

from mtl_keras.builders import gates
from mtl_keras.builders.cascade import cascade
from mtl_keras.builders.cross_stitch import cross_stitch
from mtl_keras.builders.esmm import esmm
from mtl_keras.builders.fusion import Modality, fusion
from mtl_keras.builders.mmoe import mmoe
from mtl_keras.builders.mtan import mtan, mtan_attention_model
from mtl_keras.builders.on_backbone import on_backbone
from mtl_keras.builders.ple import ple
from mtl_keras.builders.shared_bottom import shared_bottom
from mtl_keras.builders.split import split

__all__ = [
    "Modality",
    "cascade",
    "cross_stitch",
    "esmm",
    "fusion",
    "gates",
    "mmoe",
    "mtan",
    "mtan_attention_model",
    "on_backbone",
    "ple",
    "shared_bottom",
    "split",
]
