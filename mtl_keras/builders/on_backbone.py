"""Any Keras model (a CNN, a BiLSTM encoder, a keras-hub backbone) as the
shared trunk of a multi-task model."""

from __future__ import annotations

from typing import Any, Sequence

import keras

from mtl_keras.builders.common import validate_units
from mtl_keras.layers.mlp import MLP
from mtl_keras.layers.sequence_pooling import SequencePooling
from mtl_keras.model import MultiTaskModel
from mtl_keras.tasks import Task, validate_tasks

POOLINGS = ("avg", "max", "cls", "pooled", "none")
# keras-hub text backbones: output and input names.
_SEQUENCE_KEY = "sequence_output"
_POOLED_KEY = "pooled_output"
_PADDING_KEY = "padding_mask"


def _functional_input(backbone: Any) -> Any:
    """The backbone's functional input structure, None when it has none.

    A Sequential model built with an input shape (`keras.Input` first, or
    `build((None, ...))`) has no `.input` until it is called, but it has
    `.inputs` (one tensor).
    """
    if isinstance(backbone, keras.Sequential):
        try:
            inputs = backbone.inputs
        except (AttributeError, ValueError):
            return None
        return inputs[0] if inputs and len(inputs) == 1 else None
    try:
        return backbone.input
    except (AttributeError, ValueError):
        return None


def _new_inputs(backbone: keras.Model) -> Any:
    """Fresh `keras.Input`s shaped and named like the backbone's."""
    struct = _functional_input(backbone)

    def make(t: Any, name: str) -> Any:
        return keras.Input(shape=t.shape[1:], dtype=t.dtype, name=name)

    if isinstance(backbone, keras.Sequential):
        # The `name` given to its keras.Input, else "<backbone>_input" (an
        # unnamed Input's tensor is an auto-generated "keras_tensor_N").
        name = struct.name
        if not name or name.startswith("keras_tensor"):
            name = f"{backbone.name}_input"
        return make(struct, name)
    if isinstance(struct, dict):
        return {k: make(t, k) for k, t in struct.items()}
    flat = keras.tree.flatten(struct)
    made = [make(t, t.name) for t in flat]
    return made[0] if len(made) == 1 and not isinstance(struct, (list, tuple)) else made


def on_backbone(
    backbone: keras.Model,
    tasks: Sequence[Task],
    pooling: str = "avg",
    freeze: bool = False,
    tower_units: Sequence[int] = (),
    dropout: float = 0.0,
    name: str = "on_backbone",
) -> MultiTaskModel:
    """Puts task heads on a pretrained or custom backbone shared by all tasks.

    The backbone's output is read as:
    - a keras-hub text backbone's dict (`sequence_output`, optionally
      `pooled_output`); its `padding_mask` input masks the pooling;
    - `(batch, features)`: already pooled, used as is by row-level tasks;
    - `(batch, steps, features)`: a sequence (BiLSTM / Conv1D / Transformer
      encoder): pooled for row-level tasks, per token for `Tagging`;
    - `(batch, H, W, channels)`: an image feature map, pooled ("avg"/"max").

    The backbone's output tensors are the shared representation, so
    `rep_grad` strategies aggregate on them and pull back through the
    trunk once.

    Args:
        backbone: a built `keras.Model`, e.g. a CNN, a sequence encoder or
            `keras_hub.models.BertBackbone.from_preset(...)`: functional, or a
            `keras.Sequential` with an input shape (`keras.Input` as its
            first layer, or `build((None, ...))`; the new input takes the
            name given to its `keras.Input`, else `<backbone name>_input`).
        tasks: task specs; row-level tasks get a pooled head, per-token
            tasks (`Tagging`) a head on every token.
        pooling: for row-level tasks: "avg" (mean over real tokens /
            positions), "max", "cls" (first token, e.g. BERT's [CLS]),
            "pooled" (the backbone's `pooled_output`) or "none" (the backbone
            output must already be `(batch, features)`).
        freeze: freeze the backbone (transfer learning: only towers and heads
            train). It then also runs in inference mode (dropout off, batch
            norm statistics fixed), so unfreezing later needs a rebuild.
        tower_units: widths of each task's MLP tower.
        dropout: dropout rate in the towers.
        name: model name.

    Returns:
        A `MultiTaskModel` with new inputs named like the backbone's.

    Example:
    >>> import keras, keras_hub
    >>> from mtl_keras import Binary, Tagging, builders
    >>> bert = keras_hub.models.BertBackbone(
    ...     vocabulary_size=30, num_layers=1, num_heads=2, hidden_dim=8,
    ...     intermediate_dim=16, max_sequence_length=16)
    >>> model = builders.on_backbone(
    ...     bert, [Binary("spam"), Tagging("ner", num_tags=5)], pooling="cls")
    >>> tuple(model.get_layer("ner").output.shape)
    (None, None, 5)
    """
    tasks = validate_tasks(tasks)
    if not isinstance(backbone, keras.Model):
        raise ValueError(f"`backbone` must be a keras.Model, got {type(backbone).__name__}.")
    if pooling not in POOLINGS:
        raise ValueError(f"`pooling` must be one of {POOLINGS}, got {pooling!r}.")
    if not isinstance(freeze, bool):
        raise ValueError(f"`freeze` must be True or False, got {freeze!r}.")
    validate_units(tower_units, "tower_units", allow_empty=True)
    if _functional_input(backbone) is None:
        raise ValueError(
            "`backbone` has no functional inputs: build it with keras.Input (a functional "
            "or Sequential model with an input shape, or a keras-hub backbone)."
        )

    inputs = _new_inputs(backbone)
    if freeze:
        backbone.trainable = False
    # training=False keeps a frozen backbone's batch norm and dropout in
    # inference mode even while the heads train.
    out = backbone(inputs, training=False) if freeze else backbone(inputs)

    sequence = pooled = None
    if isinstance(out, dict):
        if _SEQUENCE_KEY not in out:
            raise ValueError(
                f"The backbone returns a dict with keys {sorted(out)}; expected a keras-hub "
                f"style '{_SEQUENCE_KEY}' (and optionally '{_POOLED_KEY}')."
            )
        sequence, pooled = out[_SEQUENCE_KEY], out.get(_POOLED_KEY)
    elif isinstance(out, (list, tuple)):
        raise ValueError(
            f"The backbone has {len(out)} outputs; wrap it in a model returning one feature "
            "tensor (or a keras-hub style dict)."
        )
    elif len(out.shape) == 2:
        pooled = out
    elif len(out.shape) in (3, 4):
        sequence = out
    else:
        raise ValueError(f"Unsupported backbone output shape {tuple(out.shape)}.")
    padding_mask = inputs.get(_PADDING_KEY) if isinstance(inputs, dict) else None

    needs_row = [t for t in tasks if not t.per_token]
    row_feature = None
    if needs_row:
        if pooling == "pooled" or (pooling == "none" and sequence is None):
            if pooled is None:
                raise ValueError(
                    f"pooling={pooling!r} needs a backbone that outputs a pooled "
                    "(batch, features) tensor; use 'avg', 'max' or 'cls'."
                )
            row_feature = pooled
        elif pooling == "none":
            raise ValueError(
                f"pooling='none' but the backbone output has shape {tuple(sequence.shape)}; "
                "choose 'avg', 'max' or 'cls' to pool it."
            )
        elif sequence is None:
            row_feature = pooled  # already pooled: nothing to pool
        else:
            if pooling == "cls" and len(sequence.shape) != 3:
                raise ValueError(
                    "pooling='cls' needs a sequence backbone (batch, steps, features)."
                )
            pool_in = [sequence, padding_mask] if padding_mask is not None else sequence
            row_feature = SequencePooling(pooling, name=f"{pooling}_pool")(pool_in)

    outputs = {}
    for task in tasks:
        if task.per_token:
            if sequence is None or len(sequence.shape) != 3:
                raise ValueError(
                    f"Task {task.name!r} is per token: the backbone must output "
                    "(batch, steps, features) (or a keras-hub 'sequence_output')."
                )
            feat = sequence
        else:
            feat = row_feature
        tower = MLP(tower_units, dropout=dropout, name=f"{task.name}_tower")(feat)
        outputs[task.name] = task.head(tower)
    # The backbone's outputs are the shared representation (rep_grad): every
    # task reads the trunk only through them.
    return MultiTaskModel(inputs, outputs, tasks=tasks, name=name, representation=backbone.name)
