"""mtl_keras: multi-task deep learning for Keras 3."""

from mtl_keras import (
    builders,
    callbacks,
    data,
    datasets,
    evaluation,
    export,
    layers,
    weighting,
)
from mtl_keras.model import MultiTaskModel
from mtl_keras.tasks import Binary, Multiclass, Multilabel, Regression, Task

__version__ = "0.1.0"

__all__ = [
    "Binary",
    "MultiTaskModel",
    "Multiclass",
    "Multilabel",
    "Regression",
    "Task",
    "builders",
    "callbacks",
    "data",
    "datasets",
    "evaluation",
    "export",
    "layers",
    "weighting",
]
