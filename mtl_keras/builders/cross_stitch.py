"""Cross-stitch networks (Misra et al., CVPR 2016)."""

from __future__ import annotations

from typing import Any, Sequence

import keras

from mtl_keras.builders.common import encode_inputs, validate_units
from mtl_keras.layers.cross_stitch import CrossStitch
from mtl_keras.layers.mlp import MLP
from mtl_keras.model import MultiTaskModel
from mtl_keras.tasks import Task, validate_tasks


def cross_stitch(
    inputs: Any,
    tasks: Sequence[Task],
    units: Sequence[int] = (64, 32),
    tower_units: Sequence[int] = (),
    self_weight: float = 0.9,
    dropout: float = 0.0,
    l2: float = 0.0,
    activation: str = "relu",
    batch_norm: bool = False,
    encoder: keras.layers.Layer | None = None,
    name: str = "cross_stitch",
) -> MultiTaskModel:
    """One MLP column per task; after each hidden layer a `CrossStitch` unit
    linearly mixes the columns with a learned T x T matrix, so the model
    learns how much to share at each depth (soft parameter sharing).

    Layers are named `<task>_layer<i>`, `cross_stitch_<i>`, `<task>_tower`
    and `<task>`; `model.get_layer("cross_stitch_0").alpha` is the learned
    mixing matrix of the first unit (rows: receiving task, in task order).
    The last unit's output columns are the shared representation (for
    `rep_grad` strategies).

    Args:
        inputs: a `keras.Input`, a list of them or a dict name -> `keras.Input`.
        tasks: task specs; each gets a column, a tower and a head.
        units: widths of the column layers (non-empty); a cross-stitch unit
            follows each.
        tower_units: widths of extra per-task layers after the last unit.
        self_weight: initial diagonal of each mixing matrix; off-diagonal
            entries start at `(1 - self_weight) / (T - 1)` (paper: 0.9/0.1).
        dropout: dropout rate after each hidden layer.
        l2: L2 penalty on every Dense kernel.
        activation: hidden activation.
        batch_norm: batch normalization in columns and towers.
        encoder: optional layer mapping `inputs` to one feature tensor.
        name: model name.

    Returns:
        A `MultiTaskModel` with one output per task.

    Example:
    >>> import keras
    >>> from mtl_keras import Binary, Regression, builders
    >>> model = builders.cross_stitch(
    ...     keras.Input((8,)), [Binary("click"), Regression("dwell")], units=(16, 8))
    >>> tuple(model.get_layer("cross_stitch_1").alpha.shape)
    (2, 2)
    """
    tasks = validate_tasks(tasks)
    validate_units(units, "units")
    validate_units(tower_units, "tower_units", allow_empty=True)
    if isinstance(self_weight, bool) or not 0.0 <= float(self_weight) <= 1.0:
        raise ValueError(f"`self_weight` must be in [0, 1], got {self_weight!r}.")
    features = encode_inputs(inputs, encoder)
    columns = [features] * len(tasks)
    for i, width in enumerate(units):
        columns = [
            MLP((width,), activation, dropout, l2, batch_norm, name=f"{t.name}_layer{i}")(col)
            for t, col in zip(tasks, columns)
        ]
        columns = CrossStitch(self_weight, name=f"cross_stitch_{i}")(columns)
    outputs = {}
    for task, col in zip(tasks, columns):
        tower = MLP(tower_units, activation, dropout, l2, batch_norm, name=f"{task.name}_tower")(
            col
        )
        outputs[task.name] = task.head(tower)
    # The last unit's columns (one per task) cut the shared from the
    # task-specific parameters.
    return MultiTaskModel(
        inputs, outputs, tasks=tasks, name=name, representation=f"cross_stitch_{len(units) - 1}"
    )
