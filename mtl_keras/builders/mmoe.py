"""Multi-gate Mixture-of-Experts (Ma et al., KDD 2018)."""

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


def mmoe(
    inputs: Any,
    tasks: Sequence[Task],
    num_experts: int = 8,
    expert_units: Sequence[int] = (64,),
    tower_units: Sequence[int] = (32,),
    gate_units: Sequence[int] = (),
    dropout: float = 0.0,
    l2: float = 0.0,
    activation: str = "relu",
    batch_norm: bool = False,
    encoder: keras.layers.Layer | None = None,
    name: str = "mmoe",
) -> MultiTaskModel:
    """MMoE: shared experts, one softmax gate per task mixing them, then a
    tower and head per task. Tasks with little in common learn to use
    different experts, which is what makes MMoE robust to low task
    correlation compared with a shared bottom.

    Layers are named `experts`, `gate_<task>` (a `Gate`), `mixture_<task>`,
    `<task>_tower` and `<task>`. Gate weights (per row, summing to 1 over the
    experts) are available through
    `mtl_keras.builders.gates.gate_model(model)` (a Keras model returning
    `{task: weights}`) and `gate_utilisation(model, x)` (mean weight per
    expert), e.g. to spot a collapsed gate that uses a single expert.
    The shared representation (for `rep_grad` strategies) is the experts'
    output, plus the gates' input (a `RepresentationTap` layer
    `gate_input`) when a trainable `encoder` computes it.

    Args:
        inputs: a `keras.Input`, a list of them or a dict name -> `keras.Input`.
        tasks: task specs; each gets a gate, a tower and a head.
        num_experts: number of shared experts.
        expert_units: hidden widths of each expert MLP (non-empty).
        tower_units: widths of each task tower (may be empty).
        gate_units: hidden widths inside each gate (empty: linear softmax
            gate on the input, as in the paper).
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
    >>> model = builders.mmoe(
    ...     keras.Input((8,)), [Binary("click"), Regression("dwell")],
    ...     num_experts=3, expert_units=(16,), tower_units=(8,))
    >>> list(gate_layers(model))
    ['click', 'dwell']
    """
    tasks = validate_tasks(tasks)
    validate_count(num_experts, "num_experts")
    validate_units(expert_units, "expert_units")
    validate_units(tower_units, "tower_units", allow_empty=True)
    validate_units(gate_units, "gate_units", allow_empty=True)
    features = encode_inputs(inputs, encoder)
    experts = Experts(
        num_experts, expert_units, activation, dropout, l2, batch_norm, name="experts"
    )(features)
    # Gates read the features beside the experts: with a trainable encoder
    # that read is part of the shared representation too.
    gate_features, gate_rep = fork(features, "gate_input")
    outputs = {}
    for task in tasks:
        weights = Gate(
            num_experts, gate_units, activation, l2, task=task.name, name=f"gate_{task.name}"
        )(gate_features)
        mixed = ExpertMixture(name=f"mixture_{task.name}")([experts, weights])
        tower = MLP(tower_units, activation, dropout, l2, batch_norm, name=f"{task.name}_tower")(
            mixed
        )
        outputs[task.name] = task.head(tower)
    return MultiTaskModel(
        inputs, outputs, tasks=tasks, name=name, representation=["experts", *gate_rep]
    )
