"""Cascaded task towers: tasks form a DAG and a task's tower may read its
parents' predictions and hidden features (e.g. CVR conditioned on CTR)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import keras

from mtl_keras.builders.common import encode_inputs, validate_units
from mtl_keras.layers.mlp import MLP
from mtl_keras.model import MultiTaskModel
from mtl_keras.tasks import Task, validate_tasks


def topological_order(names: Sequence[str], dependencies: Mapping[str, Sequence[str]]) -> list[str]:
    """`names` ordered so that every task comes after its parents.

    Raises ValueError for unknown tasks and for cycles (naming the tasks on
    the cycle).

    Example:
    >>> topological_order(["cvr", "ctr"], {"cvr": ["ctr"]})
    ['ctr', 'cvr']
    """
    if not isinstance(dependencies, Mapping):
        raise ValueError(
            "`dependencies` must be a dict task -> list of parent tasks, got "
            f"{type(dependencies).__name__}."
        )
    known = set(names)
    parents: dict[str, list[str]] = {n: [] for n in names}
    for child, ps in dependencies.items():
        if child not in known:
            raise ValueError(
                f"`dependencies` names unknown task {child!r}; tasks are {list(names)}."
            )
        if isinstance(ps, str) or not hasattr(ps, "__iter__"):
            raise ValueError(
                f"`dependencies[{child!r}]` must be a list of parent task names, got {ps!r}."
            )
        for p in ps:
            if p not in known:
                raise ValueError(
                    f"Task {child!r} depends on unknown task {p!r}; tasks are {list(names)}."
                )
            if p not in parents[child]:
                parents[child].append(p)

    order: list[str] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(n: str, path: list[str]) -> None:
        if state.get(n) == 2:
            return
        if state.get(n) == 1:
            cycle = path[path.index(n) :] + [n]
            raise ValueError(
                f"`dependencies` contain a cycle: {' -> '.join(cycle)} (each arrow "
                "points from a task to a parent it depends on)."
            )
        state[n] = 1
        for p in parents[n]:
            visit(p, [*path, n])
        state[n] = 2
        order.append(n)

    for n in names:
        visit(n, [])
    return order


def cascade(
    inputs: Any,
    tasks: Sequence[Task],
    dependencies: Mapping[str, Sequence[str]] | None = None,
    trunk_units: Sequence[int] = (64,),
    tower_units: Sequence[int] = (32,),
    pass_predictions: bool = True,
    pass_hidden: bool = True,
    dropout: float = 0.0,
    l2: float = 0.0,
    activation: str = "relu",
    batch_norm: bool = False,
    encoder: keras.layers.Layer | None = None,
    name: str = "cascade",
) -> MultiTaskModel:
    """A shared trunk and one tower per task, where a task's tower input is
    the trunk output concatenated with its parents' predictions and/or last
    hidden tower features (gradients flow into the parents too).

    Args:
        inputs: a `keras.Input`, a list of them or a dict name -> `keras.Input`.
        tasks: task specs.
        dependencies: dict task -> list of parent tasks, forming a DAG, e.g.
            `{"cvr": ["ctr"]}`. Unknown tasks or cycles raise ValueError.
            None or empty: independent towers (a shared-bottom model).
        trunk_units: widths of the shared trunk (may be empty).
        tower_units: widths of each task tower (non-empty when
            `pass_hidden`, since the last tower layer is what is passed).
        pass_predictions: feed parents' predictions (head outputs).
        pass_hidden: feed parents' last tower activations.
        dropout: dropout rate after each hidden layer.
        l2: L2 penalty on every hidden kernel.
        activation: hidden activation.
        batch_norm: batch normalization in trunk and towers.
        encoder: optional layer mapping `inputs` to one feature tensor.
        name: model name.

    Returns:
        A `MultiTaskModel` with one output per task.

    Example:
    >>> import keras
    >>> from mtl_keras import Binary, builders
    >>> model = builders.cascade(
    ...     keras.Input((8,)), [Binary("ctr"), Binary("cvr")],
    ...     dependencies={"cvr": ["ctr"]}, trunk_units=(16,), tower_units=(8,))
    >>> model.get_layer("cvr_tower_input").input[1].shape
    (None, 1)
    """
    tasks = validate_tasks(tasks)
    validate_units(trunk_units, "trunk_units", allow_empty=True)
    validate_units(tower_units, "tower_units", allow_empty=not pass_hidden)
    if not (pass_predictions or pass_hidden):
        raise ValueError("At least one of `pass_predictions` and `pass_hidden` must be True.")
    by_name = {t.name: t for t in tasks}
    dependencies = {} if dependencies is None else dependencies
    order = topological_order([t.name for t in tasks], dependencies)
    features = encode_inputs(inputs, encoder)
    trunk = MLP(trunk_units, activation, dropout, l2, batch_norm, name="trunk")(features)
    hidden: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    for n in order:
        parts = [trunk]
        for p in dependencies.get(n, []):
            if pass_predictions:
                parts.append(outputs[p])
            if pass_hidden:
                parts.append(hidden[p])
        tower_in = (
            keras.layers.Concatenate(name=f"{n}_tower_input")(parts) if len(parts) > 1 else trunk
        )
        hidden[n] = MLP(tower_units, activation, dropout, l2, batch_norm, name=f"{n}_tower")(
            tower_in
        )
        outputs[n] = by_name[n].head(hidden[n])
    # Towers read the trunk and their parents (above it): the trunk is the
    # shared representation.
    return MultiTaskModel(inputs, outputs, tasks=tasks, name=name, representation="trunk")
