"""Inspecting the softmax gates of mixture-of-experts models (MMoE, PLE).

Every `mtl_keras.layers.Gate` in a model is found by type and keyed by its
`key`: the task name for MMoE, `<task>_level<l>` and `shared_level<l>` for
PLE. To log utilisation (e.g. to TensorBoard), call `gate_utilisation` on a
fixed validation batch at the end of each epoch from a callback.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from mtl_keras.inputs import strings_to_tensors
from mtl_keras.layers.gate import Gate


def gate_layers(model: keras.Model) -> dict[str, Gate]:
    """The model's `Gate` layers keyed by `Gate.key` (in layer order)."""
    gates = {layer.key: layer for layer in model.layers if isinstance(layer, Gate)}
    if not gates:
        raise ValueError(
            f"Model {model.name!r} has no Gate layers (build it with "
            "builders.mmoe or builders.ple)."
        )
    return gates


def gate_model(model: keras.Model) -> keras.Model:
    """A Keras model with `model`'s inputs returning `{gate key: weights}`.

    Each output has shape `(batch, num_experts_of_that_gate)` and sums to 1
    over its last axis. For PLE the experts are ordered (task's own experts,
    then shared experts) for task gates and (every task's experts in task
    order, then shared experts) for shared gates.

    Args:
        model: a functional model containing `Gate` layers (e.g. from
            `builders.mmoe` or `builders.ple`, also after `.keras` reload).

    Example:
    >>> import keras, numpy as np
    >>> from mtl_keras import Binary, builders
    >>> model = builders.mmoe(keras.Input((4,)), [Binary("a"), Binary("b")],
    ...                       num_experts=2, expert_units=(4,), tower_units=())
    >>> w = gate_model(model).predict(np.zeros((3, 4)), verbose=0)
    >>> w["a"].shape
    (3, 2)
    """
    outputs = {key: layer.output for key, layer in gate_layers(model).items()}
    return keras.Model(model.inputs, outputs, name=f"{model.name}_gates")


def gate_utilisation(
    model: keras.Model, x: Any, batch_size: int | None = 256
) -> dict[str, np.ndarray]:
    """Mean gate weight per expert over the rows of `x`, per gate.

    Args:
        model: a model with `Gate` layers (see `gate_model`).
        x: inputs as accepted by `model.predict`.
        batch_size: prediction batch size.

    Returns:
        dict gate key -> float array `(num_experts,)` summing to 1. A value
        near 1 for one expert means the gate has collapsed onto it.

    Example:
    >>> import keras, numpy as np
    >>> from mtl_keras import Binary, builders
    >>> model = builders.mmoe(keras.Input((4,)), [Binary("a")], num_experts=2,
    ...                       expert_units=(4,), tower_units=())
    >>> float(gate_utilisation(model, np.zeros((5, 4)))["a"].sum().round(4))
    1.0
    """
    # gate_model is a plain keras.Model: convert raw string features the way
    # MultiTaskModel.predict does (Keras's array adapter rejects str arrays).
    weights = gate_model(model).predict(strings_to_tensors(x), batch_size=batch_size, verbose=0)
    return {key: np.asarray(w).mean(axis=0) for key, w in weights.items()}
