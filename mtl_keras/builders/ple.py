"""Progressive Layered Extraction (Tang et al., RecSys 2020); one level is
Customized Gate Control (CGC)."""

from __future__ import annotations

from typing import Any, Sequence

import keras

from mtl_keras.builders.common import encode_inputs, fork, validate_count, validate_units
from mtl_keras.layers.expert_mixture import ExpertMixture
from mtl_keras.layers.experts import Experts
from mtl_keras.layers.gate import Gate
from mtl_keras.layers.mlp import MLP
from mtl_keras.model import MultiTaskModel
from mtl_keras.tasks import Task, validate_tasks


def _concat_experts(parts: list[Any], name: str) -> Any:
    # Experts are stacked on axis 1: (batch, num_experts, width).
    return parts[0] if len(parts) == 1 else keras.layers.Concatenate(axis=1, name=name)(parts)


def ple(
    inputs: Any,
    tasks: Sequence[Task],
    num_levels: int = 2,
    num_shared_experts: int = 2,
    num_task_experts: int = 2,
    expert_units: Sequence[int] = (64,),
    tower_units: Sequence[int] = (32,),
    gate_units: Sequence[int] = (),
    dropout: float = 0.0,
    l2: float = 0.0,
    activation: str = "relu",
    batch_norm: bool = False,
    encoder: keras.layers.Layer | None = None,
    name: str = "ple",
) -> MultiTaskModel:
    """PLE: `num_levels` extraction levels, each with task-specific and
    shared experts, separating what tasks share from what they do not.

    At every level, task `t`'s gate mixes its own experts and the shared
    experts (the CGC unit) and produces task `t`'s input to the next level;
    on every level but the last a shared gate mixes all experts (every
    task's and the shared ones) into the next level's shared input. The last
    level's task outputs feed the towers. `num_levels=1` is CGC. A single
    task works too (its gate mixes its own and the shared experts).

    Layers are named `level<l>_<task>_experts`, `level<l>_shared_experts`,
    `level<l>_gate_<task>`, `level<l>_gate_shared`, `<task>_tower` and
    `<task>`. Gates are keyed `<task>_level<l>` / `shared_level<l>` by
    `mtl_keras.builders.gates.gate_model` and `gate_utilisation`; a task
    gate's experts are ordered (own experts, then shared experts).
    The shared representation (for `rep_grad` strategies) is the last
    level's shared experts' output plus each task's input to the last level
    (`level<L-2>_mixture_<task>`; with one level and a trainable `encoder`,
    a `RepresentationTap` layer `task_input`).

    Args:
        inputs: a `keras.Input`, a list of them or a dict name -> `keras.Input`.
        tasks: task specs.
        num_levels: number of extraction levels (>= 1).
        num_shared_experts: shared experts per level (>= 0; 0 turns the
            model into separate mixtures per task).
        num_task_experts: experts per task per level (>= 1).
        expert_units: hidden widths of each expert MLP (non-empty).
        tower_units: widths of each task tower (may be empty).
        gate_units: hidden widths inside each gate (empty: linear gate).
        dropout: dropout rate in experts and towers.
        l2: L2 penalty on every kernel.
        activation: hidden activation.
        batch_norm: batch normalization in experts and towers.
        encoder: optional layer mapping `inputs` to one feature tensor.
        name: model name.

    Returns:
        A `MultiTaskModel` with one output per task.

    Example:
    >>> import keras
    >>> from mtl_keras import Binary, Regression, builders
    >>> from mtl_keras.builders.gates import gate_layers
    >>> model = builders.ple(
    ...     keras.Input((8,)), [Binary("click"), Regression("dwell")],
    ...     num_levels=2, expert_units=(16,), tower_units=(8,))
    >>> sorted(gate_layers(model))
    ['click_level0', 'click_level1', 'dwell_level0', 'dwell_level1', 'shared_level0']
    """
    tasks = validate_tasks(tasks)
    validate_count(num_levels, "num_levels")
    validate_count(num_shared_experts, "num_shared_experts", minimum=0)
    validate_count(num_task_experts, "num_task_experts")
    validate_units(expert_units, "expert_units")
    validate_units(tower_units, "tower_units", allow_empty=True)
    validate_units(gate_units, "gate_units", allow_empty=True)
    features = encode_inputs(inputs, encoder)

    def experts(n: int, layer_name: str) -> Experts:
        return Experts(n, expert_units, activation, dropout, l2, batch_norm, name=layer_name)

    task_features, task_rep = features, []
    if num_levels == 1 or not num_shared_experts:
        # The first level's task experts and gates read the features beside
        # the shared experts: with a trainable encoder that read is part of
        # the shared representation when nothing shared lies above it.
        task_features, task_rep = fork(features, "task_input")
    task_inputs = {t.name: task_features for t in tasks}
    shared_input = features
    for level in range(num_levels):
        last = level == num_levels - 1
        own = {
            t.name: experts(num_task_experts, f"level{level}_{t.name}_experts")(task_inputs[t.name])
            for t in tasks
        }
        shared = (
            experts(num_shared_experts, f"level{level}_shared_experts")(shared_input)
            if num_shared_experts
            else None
        )
        extra = [shared] if shared is not None else []
        next_inputs = {}
        for t in tasks:
            pool = _concat_experts([own[t.name], *extra], f"level{level}_{t.name}_pool")
            weights = Gate(
                num_task_experts + num_shared_experts,
                gate_units,
                activation,
                l2,
                task=t.name,
                level=level,
                name=f"level{level}_gate_{t.name}",
            )(task_inputs[t.name])
            next_inputs[t.name] = ExpertMixture(name=f"level{level}_mixture_{t.name}")(
                [pool, weights]
            )
        if not last and num_shared_experts:
            # The shared gate sees every expert of the level, so that later
            # levels' shared experts can draw on task-specific knowledge.
            pool = _concat_experts([own[t.name] for t in tasks] + extra, f"level{level}_pool")
            weights = Gate(
                len(tasks) * num_task_experts + num_shared_experts,
                gate_units,
                activation,
                l2,
                level=level,
                name=f"level{level}_gate_shared",
            )(shared_input)
            shared_input = ExpertMixture(name=f"level{level}_mixture_shared")([pool, weights])
        task_inputs = next_inputs

    outputs = {}
    for task in tasks:
        tower = MLP(tower_units, activation, dropout, l2, batch_norm, name=f"{task.name}_tower")(
            task_inputs[task.name]
        )
        outputs[task.name] = task.head(tower)
    # The cut between shared and task-specific parameters: the last level's
    # shared experts and what each task's last-level experts and gate read.
    last = num_levels - 1
    representation = task_rep
    if num_shared_experts:
        representation = [f"level{last}_shared_experts"]
        if num_levels > 1:
            representation += [f"level{last - 1}_mixture_{t.name}" for t in tasks]
        else:
            representation += task_rep
    return MultiTaskModel(
        inputs, outputs, tasks=tasks, name=name, representation=representation or None
    )
