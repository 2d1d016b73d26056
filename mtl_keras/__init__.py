"""mtl_keras: multi-task deep learning for Keras 3.

This module is the list of public names: the task specs, the model, and the
subpackages. Importing it imports every subpackage on purpose, so that all the
library's Keras objects are registered before a `.keras` file is loaded
(`import mtl_keras; keras.saving.load_model(path)`); a lazy (PEP 562) root
would break that, so `mtl_keras.serving` is not TensorFlow-free either.
"""

from mtl_keras import (
    builders,
    callbacks,
    compress,
    data,
    datasets,
    evaluation,
    explain,
    export,
    layers,
    plots,
    serving,
    weighting,
)
from mtl_keras._version import __version__
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

__all__ = [
    "Binary",
    "BoxRegression",
    "MultiTaskModel",
    "Multiclass",
    "Multilabel",
    "Regression",
    "Tagging",
    "Task",
    "__version__",
    "add_tasks",
    "builders",
    "callbacks",
    "compress",
    "data",
    "datasets",
    "evaluation",
    "explain",
    "export",
    "layers",
    "plots",
    "serving",
    "weighting",
]
