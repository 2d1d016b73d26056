"""Marks where task-specific layers read a shared tensor."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mtl_keras")
class RepresentationTap(keras.layers.Layer):
    """Returns a copy of its input as a new tensor.

    Builders put it between a shared tensor and the task-specific layers that
    read it beside the rest of the trunk (e.g. MMoE's gates reading an
    encoder's output that the experts also read). Its output is then a
    tensor of its own in the graph and on the gradient tape, so it can be
    part of the shared representation (`rep_grad`) without the experts'
    path being counted twice. (`keras.layers.Identity` returns its input
    object unchanged, which would not separate the two reads.)

    Example:
    >>> import numpy as np
    >>> np.asarray(RepresentationTap()(np.ones((2, 3), "float32"))).shape
    (2, 3)
    """

    def call(self, inputs: Any) -> Any:
        return ops.copy(inputs)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return super().get_config()
