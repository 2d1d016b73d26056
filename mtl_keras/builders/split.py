"""Partial sharing: a backbone's layers up to a split point are shared, the
layers after it are cloned for every task."""

from __future__ import annotations

from typing import Any, Sequence

import keras

from mtl_keras import graph
from mtl_keras.builders.common import validate_units
from mtl_keras.layers.mlp import MLP
from mtl_keras.layers.sequence_pooling import SequencePooling
from mtl_keras.model import MultiTaskModel
from mtl_keras.representation import find_cut
from mtl_keras.tasks import Task, validate_tasks


def _graph_of(backbone: Any) -> keras.Model:
    """The functional graph of a functional or built Sequential model."""
    if not isinstance(backbone, keras.Model):
        raise ValueError(
            f"`backbone` must be a functional or Sequential keras.Model, got {type(backbone).__name__}."
        )
    functional = graph.functional_graph(backbone)
    if functional is None:
        raise ValueError(
            "`backbone` must be a functional model, or a Sequential model built with "
            "an input shape (e.g. starting with keras.Input(...)); subclassed models "
            "have no layer graph to split."
        )
    return functional


def _clone(op: Any, prefix: str) -> Any:
    """Same configuration, fresh weights, name prefixed with the task."""
    if isinstance(op, keras.Model):
        clone = keras.models.clone_model(op)
        clone.name = f"{prefix}_{op.name}"
        return clone
    config = op.get_config()
    config["name"] = f"{prefix}_{op.name}"
    return op.__class__.from_config(config)


def split(
    backbone: keras.Model,
    tasks: Sequence[Task],
    split_at: str,
    tower_units: Sequence[int] = (),
    dropout: float = 0.0,
    pooling: str = "avg",
    name: str = "split",
) -> MultiTaskModel:
    """Partial sharing of a functional or Sequential backbone.

    The layers the output of `split_at` depends on (the layer itself
    included) are shared by all tasks and keep their weights. Every later
    layer of the backbone is cloned once per task (same config, freshly
    initialized weights, name prefixed with the task), so each task gets its
    own copy of the top of the network, followed by an optional MLP tower
    and the task head. Splitting at the backbone's last layer is hard
    parameter sharing; splitting at its first layer shares only the inputs.
    When the cloned tails read nothing of the shared part but the output of
    `split_at` (no skip connection across the split), that output is the
    shared representation for `rep_grad` strategies.

    Args:
        backbone: a functional model or a Sequential model built with an
            input shape; it must have one output.
        tasks: task specs; each gets the cloned tail, a tower and a head.
        split_at: name of the last shared layer (must be in the backbone).
        tower_units: widths of each task's MLP tower on the tail's output.
        dropout: dropout rate in the towers.
        pooling: for a tail output with steps / spatial dims: "avg" or "max"
            pooling for row-level tasks ("cls" takes the first step);
            per-token tasks (`Tagging`) always get the unpooled sequence.
        name: model name.

    Returns:
        A `MultiTaskModel` with new inputs shaped like the backbone's.

    Example:
    >>> import keras
    >>> from mtl_keras import Binary, Regression, builders
    >>> backbone = keras.Sequential([
    ...     keras.Input((8,)), keras.layers.Dense(16, name="shared"),
    ...     keras.layers.Dense(8, name="top")])
    >>> model = builders.split(backbone, [Binary("a"), Regression("b")], split_at="shared")
    >>> sorted(l.name for l in model.layers if l.name.endswith("_top"))
    ['a_top', 'b_top']
    """
    tasks = validate_tasks(tasks)
    validate_units(tower_units, "tower_units", allow_empty=True)
    if pooling not in ("avg", "max", "cls"):
        raise ValueError(f"`pooling` must be 'avg', 'max' or 'cls', got {pooling!r}.")
    functional = _graph_of(backbone)
    if len(functional.outputs) != 1:
        raise ValueError(
            f"`backbone` must have one output, it has {len(functional.outputs)}; wrap it in a "
            "model selecting the feature to share."
        )
    layer_names = [op.name for op in functional.operations]
    if not isinstance(split_at, str) or split_at not in layer_names:
        raise ValueError(
            f"`split_at` {split_at!r} is not a layer of the backbone; layers are {layer_names}."
        )
    split_layer = functional.get_layer(split_at)
    calls = graph.call_count(split_layer)
    if calls != 1:
        raise ValueError(
            f"Layer {split_at!r} is used {calls} times in the backbone; split at a layer "
            "called once."
        )
    shared_ids = graph.upstream_operations(split_layer.output)

    inputs = [keras.Input(shape=t.shape[1:], dtype=t.dtype, name=t.name) for t in functional.inputs]
    tensors = {id(ref): new for ref, new in zip(functional.inputs, inputs)}
    # The shared part, computed once.
    graph.replay_nodes(functional, tensors, lambda op: op if id(op) in shared_ids else None)

    outputs = {}
    for task in tasks:
        task_tensors = dict(tensors)
        clones: dict[int, Any] = {}

        def op_for(op: Any, _clones: dict = clones, _prefix: str = task.name) -> Any:
            if id(op) in shared_ids:
                return op  # a shared layer reused after the split keeps sharing
            if id(op) not in _clones:
                _clones[id(op)] = _clone(op, _prefix)
            return _clones[id(op)]

        graph.replay_nodes(functional, task_tensors, op_for)
        feat = task_tensors[id(functional.outputs[0])]
        if len(feat.shape) > 2 and not task.per_token:
            feat = SequencePooling(pooling, name=f"{task.name}_pool")(feat)
        elif task.per_token and len(feat.shape) != 3:
            raise ValueError(
                f"Task {task.name!r} is per token but the backbone output has shape "
                f"{tuple(feat.shape)}, not (batch, steps, features)."
            )
        tower = MLP(tower_units, dropout=dropout, name=f"{task.name}_tower")(feat)
        outputs[task.name] = task.head(tower)
    model_inputs = inputs[0] if len(inputs) == 1 else inputs
    # The split layer's output is the shared representation when the cloned
    # parts read nothing else of the shared part (no skip connection across
    # the split).
    probe = keras.Model(model_inputs, outputs)
    cut = find_cut(probe, [split_at], outputs)
    return MultiTaskModel(
        model_inputs, outputs, tasks=tasks, name=name, representation=split_at if cut.ok else None
    )
