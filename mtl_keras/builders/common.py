"""Argument checks and input handling shared by the builders."""

from __future__ import annotations

from typing import Any, Sequence

import keras

from mtl_keras.graph import upstream_layers
from mtl_keras.layers.representation_tap import RepresentationTap


def validate_units(units: Sequence[int], what: str, allow_empty: bool = False) -> None:
    if isinstance(units, int) or not hasattr(units, "__iter__"):
        raise ValueError(f"`{what}` must be a sequence of positive integers, got {units!r}.")
    units = list(units)
    if not units and not allow_empty:
        raise ValueError(f"`{what}` must not be empty.")
    for u in units:
        if isinstance(u, bool) or not isinstance(u, int) or u < 1:
            raise ValueError(f"`{what}` must contain positive integers, got {units!r}.")


def encode_inputs(inputs: Any, encoder: keras.layers.Layer | None) -> Any:
    """Applies `encoder`, or flattens and concatenates the inputs."""
    flat = keras.tree.flatten(inputs)
    if not flat:
        raise ValueError("`inputs` is empty: pass keras.Input tensors.")
    for x in flat:
        if not isinstance(x, keras.KerasTensor):
            raise ValueError(
                f"`inputs` must be keras.Input tensors (a tensor, list or dict), got {x!r}."
            )
    if encoder is not None:
        return encoder(inputs)
    if isinstance(inputs, dict) and any(x.dtype == "string" for x in flat):
        raise ValueError(
            "`inputs` contains string features; pass an `encoder` (e.g. "
            "mtl_keras.layers.TabularEncoder) to turn them into numbers."
        )
    parts = [keras.layers.Flatten()(x) if len(x.shape) != 2 else x for x in flat]
    parts = [keras.ops.cast(p, "float32") if p.dtype != "float32" else p for p in parts]
    return parts[0] if len(parts) == 1 else keras.layers.Concatenate()(parts)


def validate_count(value: Any, what: str, minimum: int = 1) -> int:
    """Checks an integer hyper-parameter such as a number of experts."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{what}` must be an integer >= {minimum}, got {value!r}.")
    return value


def has_trainable_ancestors(tensor: Any) -> bool:
    """Whether a functional tensor is computed by layers with trainable weights
    (e.g. an encoder with embeddings), as opposed to straight from inputs."""
    return any(getattr(op, "trainable_weights", None) for op in upstream_layers([tensor]).values())


def fork(tensor: Any, name: str) -> tuple[Any, list[str]]:
    """Routes a shared tensor that task-specific layers read through its own
    `RepresentationTap` layer when it depends on trainable weights, so that the
    task-specific reads form a separate representation tensor (see
    `mtl_keras.weighting.base`). Returns the tensor to use and the
    representation layer names to add."""
    if not has_trainable_ancestors(tensor):
        return tensor, []
    return RepresentationTap(name=name)(tensor), [name]
