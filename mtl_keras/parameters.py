"""Which trainable variables are shared between tasks and which belong to one.

A layer is task-specific when exactly one task output depends on it, shared
when several do. Gradient strategies split the Jacobian along these groups
(`StepContext.shared` / `.task_specific`), and the strategy's own variables
(uncertainty's log-variances, GradNorm's weights) form a third group.

Example:
>>> import keras
>>> x = keras.Input((3,))
>>> h = keras.layers.Dense(4, name="trunk")(x)
>>> outputs = {"a": keras.layers.Dense(1)(h), "b": keras.layers.Dense(1)(h)}
>>> model = keras.Model(x, outputs)
>>> groups = variable_groups(model, task_layer_ids(list(outputs.values())))
>>> groups  # trunk kernel+bias shared; each head's kernel+bias its own
([0, 1], [[2, 3], [4, 5]], [])
"""

from __future__ import annotations

from typing import Any, Sequence

import keras

from mtl_keras import graph

__all__ = ["task_layer_ids", "variable_groups"]


def task_layer_ids(outputs: Sequence[Any]) -> list[set[int]]:
    """For each functional output tensor, the ids of the layers that only it
    depends on (the layers several outputs depend on are shared)."""
    upstream = [graph.upstream_operations(tensor) for tensor in outputs]
    counts: dict[int, int] = {}
    for ids in upstream:
        for i in ids:
            counts[i] = counts.get(i, 0) + 1
    shared = {i for i, c in counts.items() if c > 1}
    return [ids - shared for ids in upstream]


def variable_groups(
    model: keras.Model, task_layers: Sequence[set[int]], own: Sequence[Any] = ()
) -> tuple[list[int], list[list[int]], list[int]]:
    """Indices into `model.trainable_variables`: (shared, per task, own).

    Args:
        model: the model.
        task_layers: per task, its layer ids (`task_layer_ids`).
        own: the weighting strategy's trainable variables.
    """
    owner: dict[int, int] = {}
    for layer in model.layers:
        for v in layer.trainable_variables:
            owner.setdefault(id(v), id(layer))
    own_ids = {id(v) for v in own}
    shared: list[int] = []
    own_idx: list[int] = []
    per_task: list[list[int]] = [[] for _ in task_layers]
    for i, v in enumerate(model.trainable_variables):
        if id(v) in own_ids:
            own_idx.append(i)
            continue
        layer_id = owner.get(id(v))
        task = next((t for t, ids in enumerate(task_layers) if layer_id in ids), None)
        if task is None:
            shared.append(i)
        else:
            per_task[task].append(i)
    return shared, per_task, own_idx
