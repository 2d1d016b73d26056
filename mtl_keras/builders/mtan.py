"""MTAN: a shared trunk with per-task soft-attention modules (Liu, Johns &
Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019)."""

from __future__ import annotations

from typing import Any, Sequence

import keras

from mtl_keras.builders.common import validate_units
from mtl_keras.layers.mlp import MLP
from mtl_keras.layers.representation_tap import RepresentationTap
from mtl_keras.layers.sequence_pooling import SequencePooling
from mtl_keras.layers.task_attention import TaskAttention
from mtl_keras.layers.trunk_unit import UNIT_KINDS, TrunkUnit, check_momentum
from mtl_keras.model import MultiTaskModel
from mtl_keras.tasks import Task, validate_tasks

# Rank of the trunk's input features, batch included.
_INPUT_RANK = {"conv2d": 4, "conv1d": 3, "bilstm": 3}


def _mask_layer_name(task: str, block: int) -> str:
    return f"{task}_attention_{block}"


def mtan(
    inputs: Any,
    tasks: Sequence[Task],
    trunk: str = "conv2d",
    filters: Sequence[int] = (16, 32),
    kernel_size: int = 3,
    pool: bool | None = None,
    tower_units: Sequence[int] = (),
    dropout: float = 0.0,
    batch_norm_momentum: float = 0.9,
    encoder: keras.layers.Layer | None = None,
    name: str = "mtan",
) -> MultiTaskModel:
    """Multi-Task Attention Network: every task reads the shared trunk through
    its own soft-attention masks, one per trunk block.

    Block `j` of the trunk is two `TrunkUnit`s, `u_j = unit(x)` and
    `p_j = unit(u_j)`. Task `t` computes a mask
    `a_j = TaskAttention([u_j, prev_t])` (`u_0` alone for the first block) and
    its attended feature `t_j = a_j * p_j`; `prev_t` for the next block is a
    per-task unit applied to `t_j` (pooled like the trunk). The last attended
    feature goes to the task: pooled for row-level tasks, per token for
    `Tagging` (sequence trunks without pooling). Only the attention modules,
    towers and heads are task-specific; the trunk is shared. The tasks read
    `u_j` and `p_j` through `RepresentationTap` layers
    (`block<j>_unit0_read`, `block<j>_unit1_read`); these reads (and the
    last `p`) are the shared representation for `rep_grad` strategies.

    Args:
        inputs: a `keras.Input` (or a structure of them when `encoder` is
            given) giving images `(batch, H, W, C)` for "conv2d" or sequences
            `(batch, steps, C)` for "conv1d" / "bilstm".
        tasks: task specs; each gets attention modules, a tower and a head.
        trunk: "conv2d" (a small CNN), "conv1d" or "bilstm" (sequence trunks).
        filters: channels of each trunk block (one block per entry; even for
            "bilstm").
        kernel_size: convolution window of the conv trunks.
        pool: 2x max pooling between blocks; default True for "conv2d" and
            False for sequence trunks (so per-token tasks keep every step).
        tower_units: widths of each task's MLP tower after the attended
            features.
        dropout: dropout rate in the towers.
        batch_norm_momentum: momentum of the moving statistics of every batch
            norm in the trunk and attention modules. The default 0.9 (PyTorch's,
            as in the original MTAN code) suits short trainings; Keras' 0.99
            leaves the inference-mode statistics far from the training-mode
            ones after a few hundred steps (near-chance predictions).
        encoder: optional layer mapping `inputs` to the trunk's input, e.g.
            `keras.layers.Embedding(vocab_size, 32)` for token ids.
        name: model name.

    Returns:
        A `MultiTaskModel`; `mtan_attention_model(model)` exposes the masks.

    Example:
    >>> import keras
    >>> from mtl_keras import Multiclass, Regression, builders
    >>> model = builders.mtan(
    ...     keras.Input((16, 16, 3)), [Multiclass("digit", 10), Regression("size")],
    ...     trunk="conv2d", filters=(8, 16))
    >>> [tuple(m.shape) for m in builders.mtan_attention_model(model).outputs[:2]]
    [(None, 16, 16, 8), (None, 8, 8, 16)]
    """
    tasks = validate_tasks(tasks)
    if trunk not in UNIT_KINDS:
        raise ValueError(f"`trunk` must be one of {UNIT_KINDS}, got {trunk!r}.")
    validate_units(filters, "filters")
    filters = list(filters)
    if trunk == "bilstm" and any(f % 2 for f in filters):
        raise ValueError(f"`filters` must be even for a 'bilstm' trunk, got {filters}.")
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
        raise ValueError(f"`kernel_size` must be a positive integer, got {kernel_size!r}.")
    validate_units(tower_units, "tower_units", allow_empty=True)
    bn = {"batch_norm_momentum": check_momentum(batch_norm_momentum, "mtan")}
    if pool is None:
        pool = trunk == "conv2d"
    for task in tasks:
        if task.per_token and (trunk == "conv2d" or pool):
            raise ValueError(
                f"Task {task.name!r} is per token: use a sequence trunk ('conv1d' or "
                "'bilstm') with pool=False so that every step keeps its features."
            )

    if encoder is not None:
        x = encoder(inputs)
    else:
        flat = keras.tree.flatten(inputs)
        if len(flat) != 1 or not isinstance(flat[0], keras.KerasTensor):
            raise ValueError(
                "`inputs` must be one keras.Input (or pass an `encoder` that maps "
                f"several inputs to one tensor), got {inputs!r}."
            )
        x = flat[0]
    if len(x.shape) != _INPUT_RANK[trunk]:
        raise ValueError(
            f"A {trunk!r} trunk needs inputs of rank {_INPUT_RANK[trunk]} (batch "
            f"included), got shape {tuple(x.shape)}."
        )
    if x.dtype != "float32":
        x = keras.ops.cast(x, "float32")

    pool_layer = keras.layers.MaxPooling2D if trunk == "conv2d" else keras.layers.MaxPooling1D
    # The per-task feature-matching units are convolutions even on a BiLSTM
    # trunk: cheap, and their input is already contextualized.
    match_kind = "conv2d" if trunk == "conv2d" else "conv1d"
    prev: dict[str, Any] = {}
    attended: dict[str, Any] = {}
    last = len(filters) - 1
    representation: list[str] = []
    for j, f in enumerate(filters):
        u = TrunkUnit(trunk, f, kernel_size, **bn, name=f"block{j}_unit0")(x)
        p = TrunkUnit(trunk, f, kernel_size, **bn, name=f"block{j}_unit1")(u)
        # The tasks read u and p beside the trunk's own path: through taps,
        # all these reads together are the shared representation (rep_grad).
        u_read = RepresentationTap(name=f"block{j}_unit0_read")(u)
        if j == last:  # only the tasks read the last unit
            p_read, p_name = p, f"block{j}_unit1"
        else:
            p_name = f"block{j}_unit1_read"
            p_read = RepresentationTap(name=p_name)(p)
        representation += [f"block{j}_unit0_read", p_name]
        for task in tasks:
            att_in = (
                u_read
                if j == 0
                else keras.layers.Concatenate(name=f"{task.name}_concat_{j}")(
                    [u_read, prev[task.name]]
                )
            )
            mask = TaskAttention(f, **bn, name=_mask_layer_name(task.name, j))(att_in)
            feat = keras.layers.Multiply(name=f"{task.name}_attended_{j}")([mask, p_read])
            if j < last:
                nxt = TrunkUnit(
                    match_kind,
                    filters[j + 1],
                    kernel_size,
                    **bn,
                    name=f"{task.name}_match_{j}",
                )(feat)
                prev[task.name] = pool_layer(2, padding="same")(nxt) if pool else nxt
            else:
                attended[task.name] = feat
        if j < last:
            x = pool_layer(2, padding="same")(p) if pool else p

    outputs = {}
    for task in tasks:
        feat = attended[task.name]
        if not task.per_token:
            feat = SequencePooling("avg", name=f"{task.name}_pool")(feat)
        tower = MLP(tower_units, dropout=dropout, name=f"{task.name}_tower")(feat)
        outputs[task.name] = task.head(tower)
    return MultiTaskModel(inputs, outputs, tasks=tasks, name=name, representation=representation)


def mtan_attention_model(model: keras.Model) -> keras.Model:
    """A model sharing `model`'s layers that outputs every task's attention
    masks: a dict task name -> list of masks, one per trunk block, each with
    values in (0, 1) and the shape of the block's features.

    Args:
        model: a model built by `mtan`.

    Example:
    >>> from mtl_keras import Multiclass, Regression
    >>> model = mtan(keras.Input((8, 8, 1)), [Multiclass("digit", 10), Regression("size")],
    ...              trunk="conv2d", filters=(4, 8))
    >>> masks = mtan_attention_model(model).predict(np.ones((2, 8, 8, 1)), verbose=0)
    >>> masks["digit"][0].shape  # (batch, H, W, filters[0])
    (2, 8, 8, 4)
    """
    names = getattr(model, "task_names", None)
    if not names:
        raise ValueError("`model` must be a MultiTaskModel built by `builders.mtan`.")
    layer_names = {layer.name for layer in model.layers}
    outputs: dict[str, list[Any]] = {}
    for task in names:
        masks = []
        j = 0
        while _mask_layer_name(task, j) in layer_names:
            masks.append(model.get_layer(_mask_layer_name(task, j)).output)
            j += 1
        if not masks:
            raise ValueError(
                f"`model` has no attention layers for task {task!r}: build it with `builders.mtan`."
            )
        outputs[task] = masks
    return keras.Model(model.inputs, outputs, name=f"{model.name}_attention")
