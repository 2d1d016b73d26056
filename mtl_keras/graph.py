"""Reads of Keras's functional-graph internals, in one place.

Keras 3 has no public API for walking a functional model's graph (which
layer produced a tensor, which nodes call a layer, replaying nodes on new
tensors). Everything in `mtl_keras` that needs it goes through this module,
the only one allowed private Keras attributes (`_keras_history`,
`_inbound_nodes`, `_nodes_by_depth`), so a Keras upgrade is fixed here.

Example:
>>> import keras
>>> x = keras.Input((3,))
>>> h = keras.layers.Dense(2, name="h")(x)
>>> "h" in [op.name for op in upstream_layers([h]).values()]
True
>>> producer(h).name
'h'
"""

from __future__ import annotations

from typing import Any, Callable

import keras


def history_key(tensor: Any) -> tuple[int, int, int] | None:
    """(id of the producing layer, node index, tensor index), or None for a
    tensor that is not a functional (symbolic) tensor."""
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None
    op, node_index, tensor_index = history
    return id(op), node_index, tensor_index


def producer(tensor: Any) -> Any:
    """The layer (operation) that computed a functional tensor."""
    return tensor._keras_history[0]


def upstream_layers(tensors: list[Any], stop: frozenset = frozenset()) -> dict[int, Any]:
    """id -> operation (layer) for every operation the functional `tensors`
    depend on, their own producers included, not looking past the tensors
    whose `history_key` is in `stop`."""
    seen: dict[int, Any] = {}
    visited_nodes: set[int] = set()
    stack = list(tensors)
    while stack:
        t = stack.pop()
        key = history_key(t)
        if key is None or key in stop:
            continue
        op, node_index, _ = t._keras_history
        node = op._inbound_nodes[node_index]
        if id(node) in visited_nodes:
            continue
        visited_nodes.add(id(node))
        seen[id(op)] = op
        stack.extend(node.input_tensors)
    return seen


def upstream_operations(tensor: Any) -> set[int]:
    """ids of the operations (layers) a functional tensor depends on, its own included."""
    return set(upstream_layers([tensor]))


def call_count(layer: Any) -> int:
    """How many times `layer` is called in the functional graphs it belongs to."""
    return len(layer._inbound_nodes)


def nodes_by_operation(model: keras.Model) -> dict[int, list[Any]]:
    """id of each operation of `model` -> the nodes calling it inside `model`."""
    nodes_of: dict[int, list[Any]] = {}
    for depth_nodes in model._nodes_by_depth.values():
        for node in depth_nodes:
            if node.operation is not None:
                nodes_of.setdefault(id(node.operation), []).append(node)
    return nodes_of


def functional_graph(model: Any) -> keras.Model | None:
    """The functional graph of a functional or built Sequential model, or None
    (subclassed models, unbuilt Sequential models)."""
    graph = getattr(model, "_functional", None) if isinstance(model, keras.Sequential) else model
    if graph is None or not hasattr(graph, "_nodes_by_depth"):
        return None
    return graph


def replay_nodes(graph: keras.Model, tensors: dict[int, Any], op_for: Callable[[Any], Any]) -> None:
    """Replays `graph`'s nodes in order, filling `tensors` (id of the original
    tensor -> new tensor) for every node whose inputs are available.

    `op_for(layer)` gives the layer to call instead of `layer` (itself, a
    clone, ...) or None to skip the node.
    """
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        for node in graph._nodes_by_depth[depth]:
            if not node.operation or node.is_input:
                continue
            if all(id(t) in tensors for t in node.outputs):
                continue  # already computed (shared part)
            if any(id(t) not in tensors for t in node.input_tensors):
                continue
            op = op_for(node.operation)
            if op is None:
                continue
            args, kwargs = node.arguments.fill_in(tensors)
            outputs = op(*args, **kwargs)
            for ref, new in zip(node.outputs, keras.tree.flatten(outputs)):
                tensors[id(ref)] = new


def untracked() -> Any:
    """A context in which attributes set on a Keras layer/model are not
    auto-tracked (helper objects that share the model's layers or that a
    later `compile` replaces)."""
    from keras.src.utils.tracking import DotNotTrackScope

    return DotNotTrackScope()


def untrack(owner: keras.layers.Layer, value: Any) -> None:
    """Stops `owner` tracking `value` (a sub-layer it no longer uses), so its
    variables leave `owner.trainable_variables` and its saved state."""
    owner._tracker.untrack(value)
