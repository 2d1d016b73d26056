"""Server-side serving of requests that omit whole modalities (`builders.fusion`).

An export of a fusion model carries, next to `serving_default`, one
`without_<modalities>` signature per allowed set of absent modalities; each
takes only the present modalities' inputs and serves exactly
`serving_default` with the absent modalities' masks 0. The implementation
lives in `mtl_keras.layers.modality_serving` (under `ModalityStack`, which
describes and builds them for `export_saved_model`).

Example:
>>> modality_signature_name(["image"])
'without_image'
"""

from __future__ import annotations

from typing import Any

import keras

from mtl_keras.layers.modality_serving import (
    MAX_SUBSET_MODALITIES,
    modality_signature_name,
    modality_signatures,
    split_request,
)
from mtl_keras.layers.modality_stack import ModalityStack

__all__ = [
    "MAX_SUBSET_MODALITIES",
    "modality_signature_name",
    "modality_signatures",
    "serving_endpoints",
    "split_request",
]


def serving_endpoints(model: keras.Model) -> dict[str, tuple[Any, list[Any]]]:
    """The `without_<modalities>` signatures of a `builders.fusion` model:
    name -> (serving function, input `tf.TensorSpec`s).

    Args:
        model: a `builders.fusion` model.

    Example:
    >>> from mtl_keras import Binary, builders
    >>> from mtl_keras.builders.fusion import Modality
    >>> model = builders.fusion(
    ...     [Modality("a", keras.Input((3,), name="a")),
    ...      Modality("b", keras.Input((2,), name="b"))],
    ...     [Binary("click")], fusion_dim=4, trunk_units=())
    >>> sorted(serving_endpoints(model))
    ['without_a', 'without_b']
    """
    stack = next((la for la in model.layers if isinstance(la, ModalityStack)), None)
    if stack is None:
        raise ValueError(f"Model {model.name!r} is not a builders.fusion model (no ModalityStack).")
    return stack.serving_endpoints(model)
