"""Shared-bottom (hard parameter sharing): one trunk, one tower per task."""

from __future__ import annotations

from typing import Any, Sequence

import keras

from mtl_keras.builders.common import encode_inputs, validate_units
from mtl_keras.layers.mlp import MLP
from mtl_keras.model import MultiTaskModel
from mtl_keras.tasks import Task, validate_tasks


def shared_bottom(
    inputs: Any,
    tasks: Sequence[Task],
    trunk_units: Sequence[int] = (256, 128),
    tower_units: Sequence[int] = (64,),
    dropout: float = 0.0,
    l2: float = 0.0,
    activation: str = "relu",
    batch_norm: bool = False,
    encoder: keras.layers.Layer | None = None,
    name: str = "shared_bottom",
) -> MultiTaskModel:
    """Hard parameter sharing (Caruana 1997): a shared MLP trunk feeding one
    MLP tower and output head per task.

    Args:
        inputs: a `keras.Input`, a list of them or a dict feature name ->
            `keras.Input` (raw features, when `encoder` is given).
        tasks: task specs; each gets a tower and a head named after it.
        trunk_units: widths of the shared layers.
        tower_units: widths of each task tower (same for every task).
        dropout: dropout rate after each hidden layer.
        l2: L2 penalty on every hidden kernel.
        activation: hidden activation.
        batch_norm: batch normalization in trunk and towers.
        encoder: optional layer mapping `inputs` to one feature tensor (e.g.
            `mtl_keras.layers.TabularEncoder`); otherwise inputs are flattened
            and concatenated.
        name: model name.

    Returns:
        A `MultiTaskModel` with one output per task.

    Example:
    >>> import keras
    >>> from mtl_keras import Binary, Regression, builders
    >>> model = builders.shared_bottom(
    ...     keras.Input((8,)), [Binary("click"), Regression("dwell")],
    ...     trunk_units=(16,), tower_units=(8,))
    >>> sorted(model.output_names)
    ['click', 'dwell']
    """
    tasks = validate_tasks(tasks)
    validate_units(trunk_units, "trunk_units", allow_empty=True)
    validate_units(tower_units, "tower_units", allow_empty=True)
    features = encode_inputs(inputs, encoder)
    trunk = MLP(trunk_units, activation, dropout, l2, batch_norm, name="trunk")(features)
    outputs = {}
    for task in tasks:
        tower = MLP(tower_units, activation, dropout, l2, batch_norm, name=f"{task.name}_tower")(
            trunk
        )
        outputs[task.name] = task.head(tower)
    return MultiTaskModel(inputs, outputs, tasks=tasks, name=name, representation="trunk")
