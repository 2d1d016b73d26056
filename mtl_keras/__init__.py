"""mtl_keras: multi-task deep learning for Keras 3."""

from mtl_keras import (
    builders,
    callbacks,
    data,
    datasets,
    evaluation,
    export,
    layers,
    plots,
    serving,
    weighting,
)
from mtl_keras.incremental import add_tasks
from mtl_keras.model import MultiTaskModel
from mtl_keras.tasks import (
    Binary,
    BoxRegression,
    Multiclass,
    Multilabel,
    Regression,
    Tagging,
    Task,
)

__version__ = "0.1.0"

__all__ = [
    "Binary",
    "BoxRegression",
    "MultiTaskModel",
    "Multiclass",
    "Multilabel",
    "Regression",
    "Tagging",
    "Task",
    "add_tasks",
    "builders",
    "callbacks",
    "data",
    "datasets",
    "evaluation",
    "export",
    "layers",
    "plots",
    "serving",
    "weighting",
]
