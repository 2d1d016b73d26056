"""Adding tasks to a trained multi-task model (incremental learning)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from mtl_keras import graph
from mtl_keras import representation as rep_lib
from mtl_keras.layers.mlp import MLP
from mtl_keras.model import MultiTaskModel
from mtl_keras.representation import find_cut
from mtl_keras.tasks import Task, validate_tasks


def shared_representation(model: MultiTaskModel, representation: str | None = None) -> Any:
    """The functional tensor new task heads are built on.

    The same rule as the weighting strategies' (`mtl_keras.representation`):
    the layer named by `representation`, else the model's declared
    representation when it is one layer (every single-trunk builder declares
    it). Otherwise (no declaration, or one made of several tensors such as
    MMoE's experts and gate input): the last layer, in topological order,
    that every task's output depends on, found by walking the graph.

    Example:
    >>> import keras
    >>> from mtl_keras import Binary, builders
    >>> model = builders.shared_bottom(keras.Input((4,)), [Binary("a"), Binary("b")],
    ...                                trunk_units=(8,), tower_units=())
    >>> shared_representation(model).shape
    (None, 8)
    """
    names = {layer.name for layer in model.layers}
    name = representation
    if name is None and isinstance(model.representation, str):
        name = model.representation
    if name is not None:
        if name not in names:
            raise ValueError(f"Model {model.name!r} has no layer named {name!r}.")
        layer = model.get_layer(name)
    else:
        upstream = [graph.upstream_operations(model.output[n]) for n in model.task_names]
        common = set.intersection(*upstream) if len(upstream) > 1 else set()
        shared = [
            layer
            for layer in model.layers
            if id(layer) in common and not isinstance(layer, keras.layers.InputLayer)
        ]
        if not shared:
            raise ValueError(
                f"Model {model.name!r} has no layer shared by all tasks "
                f"{model.task_names}; pass `representation=<layer name>`."
            )
        layer = shared[-1]
    if graph.call_count(layer) != 1:
        raise ValueError(
            f"Shared layer {layer.name!r} is called more than once; pass `representation=`."
        )
    return layer.output


def _representation_for(model: MultiTaskModel, outputs: dict[str, Any], rep_layer: str) -> Any:
    """The new model's representation: the old declaration when it is still a
    cut with the new heads, else the layer the heads read when that is one,
    else None (no rep_grad strategies)."""
    probe = keras.Model(model.input, outputs)
    candidates = [rep_lib.layer_names(model.representation), [rep_layer]]
    for names in candidates:
        if names and find_cut(probe, names, outputs).ok:
            return model.representation if names == candidates[0] else rep_layer
    return None


def add_tasks(
    model: MultiTaskModel,
    new_tasks: Sequence[Task],
    freeze_shared: bool = True,
    tower_units: Sequence[int] = (64,),
    freeze_old_heads: bool | None = None,
    representation: str | None = None,
    activation: str = "relu",
    dropout: float = 0.0,
    name: str | None = None,
) -> MultiTaskModel:
    """A new `MultiTaskModel` with heads for `new_tasks` on `model`'s trunk.

    The new model reuses `model`'s layers (same weight objects, so the old
    heads keep their weights and, with a frozen trunk, their predictions) and
    adds, per new task, an `MLP(tower_units)` tower and the task's head on
    the shared representation (see `shared_representation`; a rank > 2
    representation, e.g. stacked MMoE experts, is flattened first). The new
    model keeps `model`'s declared `representation` when the new heads leave
    it a valid cut (else it declares the layer they read, when that is one),
    so `rep_grad` strategies keep working.

    Freezing sets `layer.trainable = False` on the shared layers (and old
    towers/heads), which also affects `model` since the layers are shared;
    set them back to `True` to fine-tune. Frozen batch-norm layers run in
    inference mode. Compile the returned model before fitting; labels of old
    tasks may be omitted (they count as unlabelled).

    Args:
        model: a trained `MultiTaskModel`.
        new_tasks: task specs to add (names must be new).
        freeze_shared: make the layers shared by all tasks non-trainable.
        tower_units: hidden widths of each new task's tower (may be empty).
        freeze_old_heads: make the old tasks' own layers non-trainable too;
            default: same as `freeze_shared`, so old predictions cannot change.
        representation: name of the layer to build on (default: see
            `shared_representation`).
        activation, dropout: for the new towers.
        name: the new model's name (default: `<model.name>_plus`).

    Returns:
        A `MultiTaskModel` with the old tasks followed by the new ones.

    Example:
    >>> import keras
    >>> from mtl_keras import Binary, Regression, builders
    >>> base = builders.shared_bottom(keras.Input((4,)), [Binary("a"), Binary("b")],
    ...                               trunk_units=(8,), tower_units=())
    >>> bigger = add_tasks(base, [Regression("c")], tower_units=(4,))
    >>> bigger.task_names
    ['a', 'b', 'c']
    """
    new_tasks = validate_tasks(new_tasks)
    clash = sorted(set(model.task_names) & {t.name for t in new_tasks})
    if clash:
        raise ValueError(f"Tasks {clash} already exist in model {model.name!r}.")
    if freeze_old_heads is None:
        freeze_old_heads = freeze_shared
    rep = shared_representation(model, representation)
    rep_layer = graph.producer(rep)
    # Everything the representation depends on is trunk; the rest is per task.
    trunk_ids = graph.upstream_operations(rep)
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if id(layer) in trunk_ids:
            if freeze_shared:
                layer.trainable = False
        elif freeze_old_heads:
            layer.trainable = False
    features = rep
    if len(rep.shape) > 2:
        features = keras.layers.Flatten(name=f"{rep_layer.name}_flat")(rep)
    outputs = {n: model.output[n] for n in model.task_names}
    for task in new_tasks:
        tower = MLP(tower_units, activation, dropout, name=f"{task.name}_tower")(features)
        outputs[task.name] = task.head(tower)
    return MultiTaskModel(
        model.input,
        outputs,
        tasks=[*model.tasks, *new_tasks],
        name=name or f"{model.name}_plus",
        representation=_representation_for(model, outputs, rep_layer.name),
    )
