"""The shared representation: one rule, one error.

A model may name the layer(s) whose outputs form the shared representation
z (`MultiTaskModel(..., representation="trunk")`; builders set it). z must
be a cut of the graph between the shared and the task-specific parameters:
every trainable layer that z depends on reaches the task outputs only
through z, no tensor of z is computed from another, and each layer of z is
called once. `find_cut` checks that and returns the result (a builder can
try a candidate without catching); `MultiTaskModel` raises its problem;
strategies call `require` on the step's representation.

Example:
>>> import keras
>>> from mtl_keras import Binary, MultiTaskModel
>>> x = keras.Input((4,))
>>> z = keras.layers.Dense(8, name="trunk")(x)
>>> tasks = [Binary("a"), Binary("b")]
>>> model = MultiTaskModel(x, {t.name: t.head(z) for t in tasks}, tasks=tasks)
>>> find_cut(model, ["trunk"]).ok
True
>>> find_cut(model, ["nope"]).problem.startswith("representation layer 'nope'")
True
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras

from mtl_keras import graph


class RepresentationError(ValueError):
    """A shared representation that is missing or not a valid cut of the model."""


@dataclasses.dataclass(frozen=True)
class Cut:
    """The result of `find_cut`.

    Attributes:
        names: the representation layer names that were checked.
        tensors: their output tensors (empty when `problem` is set).
        problem: why the layers are not a valid cut, or None.
    """

    names: tuple[str, ...]
    tensors: tuple[Any, ...] = ()
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def raise_if_invalid(self) -> list[Any]:
        """The cut's tensors, or `RepresentationError` with the problem."""
        if self.problem is not None:
            raise RepresentationError(self.problem)
        return list(self.tensors)


def layer_names(representation: Any) -> list[str]:
    """`representation=` (None, a layer name or a list of names) as a list of names."""
    if representation is None:
        return []
    if isinstance(representation, str):
        return [representation]
    if isinstance(representation, (list, tuple)):
        return [str(n) for n in representation]
    raise RepresentationError(
        f"`representation` must be a layer name or a list of layer names, got {representation!r}."
    )


def find_cut(model: keras.Model, names: list[str], outputs: dict[str, Any] | None = None) -> Cut:
    """Checks that the layers `names` of the functional `model` form a cut.

    Args:
        model: a functional model (e.g. a `MultiTaskModel`).
        names: layer names of the candidate representation.
        outputs: task name -> output tensor (default: `model`'s dict outputs).

    Returns:
        A `Cut`: its `tensors` when valid, else its `problem`.
    """
    if outputs is None:
        outputs = dict(zip(model.output_names, keras.tree.flatten(model.outputs)))
    names = list(names)
    tensors: list[Any] = []
    rep_nodes: list[Any] = []
    nodes_of = graph.nodes_by_operation(model)

    def fail(problem: str) -> Cut:
        return Cut(tuple(names), (), problem)

    for name in names:
        layer = next((op for op in model.operations if op.name == name), None)
        if layer is None:
            return fail(
                f"representation layer {name!r} is not a layer of the model; layers are "
                f"{[op.name for op in model.operations]}."
            )
        nodes = nodes_of.get(id(layer), [])
        if len(nodes) != 1:
            return fail(
                f"representation layer {name!r} is called {len(nodes)} times in the model; "
                "it must be called once."
            )
        rep_nodes.append(nodes[0])
        tensors.extend(keras.tree.flatten(nodes[0].outputs))
    keys = frozenset(graph.history_key(t) for t in tensors)
    for node in rep_nodes:
        below = graph.upstream_layers(list(node.input_tensors))
        for other in rep_nodes:
            if id(other.operation) in below:
                return fail(
                    f"representation tensor of layer {node.operation.name!r} is computed from "
                    f"the representation layer {other.operation.name!r}; list only "
                    "tensors that do not depend on each other."
                )
    below_rep = graph.upstream_layers(tensors)
    for task, out in outputs.items():
        for op_id, op in graph.upstream_layers([out], keys).items():
            if op_id in below_rep and getattr(op, "trainable_weights", None):
                return fail(
                    f"layer {op.name!r} feeds the representation {names} and also reaches "
                    f"task {task!r} beside it; add its tensor that reaches {task!r} to the "
                    "representation (read it through its own layer, e.g. "
                    "mtl_keras.layers.RepresentationTap)."
                )
    return Cut(tuple(names), tuple(tensors))


def missing(strategy: str) -> RepresentationError:
    """The error for a strategy that needs a representation the model lacks."""
    return RepresentationError(
        f"{strategy} needs a model that declares its shared representation: build it "
        "with `representation=<layer name or names>` (every builder declares it; "
        "`split` only without a skip connection across the split), or use rep_grad=False."
    )


def as_tensor_list(representation: Any) -> list[Any]:
    """The representation as a list of tensors (one tensor, or a list)."""
    if representation is None:
        return []
    if isinstance(representation, (list, tuple)):
        return list(representation)
    return [representation]


def require(representation: Any, strategy: str) -> list[Any]:
    """The step's representation tensors as a list, or `RepresentationError`
    naming the `strategy` that needs them."""
    reps = as_tensor_list(representation)
    if not reps:
        raise missing(strategy)
    return reps


def tapped_model(model: keras.Model, tensors: list[Any], strategy: str) -> keras.Model:
    """A functional model over `model`'s layers whose outputs are the task
    outputs, in task order, then the representation's tensors, so that a
    training step records both on its tape. Create it untracked
    (`graph.untracked()`): it shares `model`'s layers.

    Args:
        model: a `MultiTaskModel`.
        tensors: its representation's tensors (from `find_cut`); none raises.
        strategy: who needs them, for the error when there are none.
    """
    if not tensors:
        raise missing(strategy)
    return keras.Model(model.input, [model.output[n] for n in model.task_names] + list(tensors))


def call_tapped(tapped: keras.Model, x: Any, task_names: list[str]) -> tuple[dict, list]:
    """Runs a `tapped_model` in training mode: (predictions by task, representation)."""
    outs = tapped(x, training=True)
    return dict(zip(task_names, outs[: len(task_names)])), list(outs[len(task_names) :])
