"""Reusable Keras layers that builders compose (each has `get_config`)."""

from mtl_keras.layers.cross_stitch import CrossStitch
from mtl_keras.layers.expert_mixture import ExpertMixture
from mtl_keras.layers.experts import Experts
from mtl_keras.layers.fusion_weights import FusionWeights
from mtl_keras.layers.gate import Gate
from mtl_keras.layers.mlp import MLP
from mtl_keras.layers.modality_concat import ModalityConcat
from mtl_keras.layers.modality_stack import ModalityMask, ModalityStack
from mtl_keras.layers.modality_towers import ModalityTowers
from mtl_keras.layers.numeric_embeddings import PeriodicEmbedding, PiecewiseLinearEncoding
from mtl_keras.layers.representation_tap import RepresentationTap
from mtl_keras.layers.sequence_pooling import SequencePooling
from mtl_keras.layers.tabular_encoder import TabularEncoder
from mtl_keras.layers.task_attention import TaskAttention
from mtl_keras.layers.trunk_unit import TrunkUnit

__all__ = [
    "MLP",
    "CrossStitch",
    "ExpertMixture",
    "Experts",
    "FusionWeights",
    "Gate",
    "ModalityConcat",
    "ModalityMask",
    "ModalityStack",
    "ModalityTowers",
    "PeriodicEmbedding",
    "PiecewiseLinearEncoding",
    "RepresentationTap",
    "SequencePooling",
    "TabularEncoder",
    "TaskAttention",
    "TrunkUnit",
]
