"""Multimodal fusion: several modality encoders -> fusion -> shared trunk -> task heads.

Every modality has a presence mask input (`<modality>_mask`, 1 present, 0
missing), so a row without a picture or without text is predicted from the
modalities it has: the missing modality's token is exactly 0 and its fusion
weight exactly 0, whatever its placeholder input holds.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import keras
import numpy as np

from mtl_keras.builders.common import encode_inputs, validate_count, validate_units
from mtl_keras.builders.fusion_requests import complete_request  # re-exported
from mtl_keras.inputs import strings_to_tensors
from mtl_keras.layers.expert_mixture import ExpertMixture
from mtl_keras.layers.fusion_weights import FusionWeights
from mtl_keras.layers.mlp import MLP
from mtl_keras.layers.modality_concat import ModalityConcat
from mtl_keras.layers.modality_stack import ModalityMask, ModalityStack, mask_input_name
from mtl_keras.layers.modality_towers import ModalityTowers
from mtl_keras.layers.sequence_pooling import SequencePooling
from mtl_keras.model import MultiTaskModel
from mtl_keras.tasks import Task, validate_tasks

__all__ = [
    "Modality",
    "complete_request",
    "fusion",
    "fusion_weight_layers",
    "fusion_weight_model",
    "fusion_weights",
    "modality_names",
]

FUSIONS = ("concat", "attention", "late")
STACK_LAYER = "modality_tokens"


@dataclasses.dataclass
class Modality:
    """One input modality of a `fusion` model.

    Args:
        name: modality name (its mask input is `<name>_mask`).
        inputs: its `keras.Input`(s): a tensor, a list, or a dict name ->
            tensor (e.g. `TabularEncoder.inputs()`). Name every input: the
            names are the model's (and the SavedModel signature's) input names.
        encoder: a layer or model mapping `inputs` to features: `(batch, f)`
            used as is, `(batch, steps, f)` mean-pooled, `(batch, H, W, c)`
            average-pooled, or a keras-hub text backbone's dict (its
            `sequence_output` pooled under the `padding_mask` input). None:
            the inputs are flattened and concatenated.
        freeze: freeze the encoder (e.g. a pretrained text backbone such as
            MiniLM): its weights are not trained and it runs in inference
            mode (dropout off, batch-norm statistics fixed).
            `fusion_encoders.text_backbone_modality` builds a frozen or
            trainable keras-hub text modality.

    Example:
    >>> import keras
    >>> Modality("image", keras.Input((8, 8, 1), name="image")).name
    'image'
    """

    name: str
    inputs: Any
    encoder: Any = None
    freeze: bool = False


def _named_inputs(modality: Modality) -> dict[str, Any]:
    """The modality's inputs as a dict keyed by the model-level input name."""
    inputs = modality.inputs
    if isinstance(inputs, Mapping):
        named = dict(inputs)
    else:
        named = {t.name: t for t in keras.tree.flatten(inputs) if hasattr(t, "name")}
    flat = keras.tree.flatten(inputs)
    if not flat or len(named) != len(flat):
        raise ValueError(
            f"Modality {modality.name!r}: `inputs` must be named keras.Input tensors "
            f"(a tensor, list or dict) with distinct names, got {inputs!r}."
        )
    for t in flat:
        if not isinstance(t, keras.KerasTensor):
            raise ValueError(
                f"Modality {modality.name!r}: `inputs` must be keras.Input tensors, got {t!r}."
            )
    return named


def _features(modality: Modality) -> Any:
    """The modality's encoder output as one `(batch, features)` tensor."""
    name = modality.name
    if modality.encoder is None:
        out = encode_inputs(modality.inputs, None)
    elif modality.freeze:
        modality.encoder.trainable = False
        # training=False: a frozen encoder's dropout and batch norm stay in
        # inference mode while the rest of the model trains.
        out = modality.encoder(modality.inputs, training=False)
    else:
        out = modality.encoder(modality.inputs)
    if isinstance(out, dict):
        if "sequence_output" not in out:
            raise ValueError(
                f"Modality {name!r}: the encoder returns a dict with keys {sorted(out)}; "
                "expected a keras-hub style 'sequence_output'."
            )
        seq = out["sequence_output"]
        padding = modality.inputs.get("padding_mask") if isinstance(modality.inputs, dict) else None
        pool_in = [seq, padding] if padding is not None else seq
        return SequencePooling("avg", name=f"{name}_pool")(pool_in)
    if isinstance(out, (list, tuple)):
        raise ValueError(
            f"Modality {name!r}: the encoder has {len(out)} outputs; wrap it to return one "
            "feature tensor."
        )
    if len(out.shape) == 2:
        return out
    if len(out.shape) == 3:
        return SequencePooling("avg", name=f"{name}_pool")(out)
    if len(out.shape) == 4:
        return keras.layers.GlobalAveragePooling2D(name=f"{name}_pool")(out)
    raise ValueError(
        f"Modality {name!r}: unsupported encoder output shape {tuple(out.shape)}; expected "
        "(batch, f), (batch, steps, f) or (batch, H, W, c)."
    )


def _validate_modalities(modalities: Any) -> list[Modality]:
    if isinstance(modalities, Modality) or not isinstance(modalities, Sequence) or not modalities:
        raise ValueError(
            "`modalities` must be a non-empty list of builders.fusion.Modality, got "
            f"{modalities!r}."
        )
    for m in modalities:
        if not isinstance(m, Modality):
            raise ValueError(f"`modalities` must contain Modality objects, got {m!r}.")
        if not isinstance(m.name, str) or not m.name.isidentifier():
            raise ValueError(f"Modality name must be an identifier-like string, got {m.name!r}.")
        if not isinstance(m.freeze, bool):
            raise ValueError(
                f"Modality {m.name!r}: `freeze` must be True or False, got {m.freeze!r}."
            )
        if m.freeze and m.encoder is None:
            raise ValueError(f"Modality {m.name!r}: `freeze=True` needs an `encoder`.")
    names = [m.name for m in modalities]
    if len(set(names)) != len(names):
        raise ValueError(f"Modality names must be distinct, got {names}.")
    return list(modalities)


def fusion(
    modalities: Sequence[Modality],
    tasks: Sequence[Task],
    fusion: str = "attention",
    fusion_dim: int = 32,
    trunk_units: Sequence[int] = (64,),
    tower_units: Sequence[int] = (32,),
    attention_units: int = 32,
    dropout: float = 0.0,
    l2: float = 0.0,
    activation: str = "relu",
    name: str = "fusion",
) -> MultiTaskModel:
    """Multimodal multi-task model: encoders -> fusion -> shared trunk -> heads.

    Each modality's encoder output is projected to `fusion_dim` (layer
    `project_<modality>`) and the projections are stacked into tokens
    `(batch, M, fusion_dim)` by a `ModalityStack` named `modality_tokens`,
    which zeroes the token of every missing modality (mask input
    `<modality>_mask` = 0). Then, by `fusion`:

    - "concat": tokens and mask concatenated (`fused`), one shared `trunk`
      MLP, a tower and head per task. Shared representation: the trunk
      output (or `fused` with an empty trunk).
    - "attention": the shared trunk runs per modality (inside
      `project_<modality>`); each task has its own `FusionWeights` layer
      `fusion_<task>` (attention over the present modalities, content
      dependent), a weighted sum of the tokens, a tower and a head.
    - "late": per task, one MLP tower per modality (`<task>_modality_towers`),
      mixed by learned per-task modality weights `fusion_<task>` (static,
      renormalised over the present modalities) right before the linear
      task head: the task's logits are a weighted mean of per-modality logits.

    For "attention" and "late" the shared representation (rep_grad) is
    `modality_tokens`. Per-task fusion weights are read with
    `fusion_weights(model, x)` and logged to TensorBoard by `TaskTensorBoard`.

    Args:
        modalities: `Modality` specs (name, inputs, encoder), at least one.
        tasks: row-level task specs (per-token tasks are not supported).
        fusion: "concat", "attention" or "late".
        fusion_dim: width of each modality token.
        trunk_units: the shared trunk's hidden widths: after the concatenation
            ("concat"), or per modality before `fusion_dim` ("attention",
            "late"). May be empty.
        tower_units: each task's tower widths (for "late": each modality
            tower of each task). May be empty.
        attention_units: width of the attention projection ("attention").
        dropout: dropout rate in trunk and towers.
        l2: L2 penalty on kernels.
        activation: hidden activation.
        name: model name.

    Returns:
        A `MultiTaskModel` whose inputs are a dict: every modality's inputs
        plus one `<modality>_mask` input `(batch,)` per modality.

    Example:
    >>> import keras
    >>> from mtl_keras import Binary, Regression, builders
    >>> from mtl_keras.builders.fusion import Modality
    >>> model = builders.fusion(
    ...     [Modality("a", keras.Input((3,), name="a")),
    ...      Modality("b", keras.Input((4,), name="b"))],
    ...     [Binary("click"), Regression("price")], fusion_dim=8, trunk_units=())
    >>> sorted(model.input)
    ['a', 'a_mask', 'b', 'b_mask']
    """
    tasks = validate_tasks(tasks)
    modalities = _validate_modalities(modalities)
    if fusion not in FUSIONS:
        raise ValueError(f"`fusion` must be one of {FUSIONS}, got {fusion!r}.")
    validate_count(fusion_dim, "fusion_dim")
    validate_count(attention_units, "attention_units")
    validate_units(trunk_units, "trunk_units", allow_empty=True)
    validate_units(tower_units, "tower_units", allow_empty=True)
    for task in tasks:
        if task.per_token:
            raise ValueError(
                f"Task {task.name!r} is per token; fusion models predict one output per row."
            )

    names = [m.name for m in modalities]
    model_inputs: dict[str, Any] = {}
    modality_inputs: dict[str, list[str]] = {}
    for m in modalities:
        named = _named_inputs(m)
        for key in named:
            if key in model_inputs or key in {mask_input_name(n) for n in names}:
                raise ValueError(
                    f"Modality {m.name!r}: input name {key!r} is already used by another "
                    "modality or a mask input; input names must be unique."
                )
        model_inputs.update(named)
        modality_inputs[m.name] = list(named)
    masks = {
        mask_input_name(n): keras.Input(shape=(), dtype="float32", name=mask_input_name(n))
        for n in names
    }
    model_inputs.update(masks)
    mask = ModalityMask(name="modality_mask")(list(masks.values()))

    # concat: a per-modality linear projection, the trunk after fusion;
    # attention/late: the shared trunk runs per modality, fusion is per task.
    project_units = (fusion_dim,) if fusion == "concat" else (*trunk_units, fusion_dim)
    embeddings = [
        MLP(project_units, activation, dropout, l2, name=f"project_{m.name}")(_features(m))
        for m in modalities
    ]
    tokens = ModalityStack(names, modality_inputs, name=STACK_LAYER)([*embeddings, mask])

    outputs = {}
    if fusion == "concat":
        fused = ModalityConcat(name="fused")([tokens, mask])
        shared = fused
        representation = "fused"
        if trunk_units:
            shared = MLP(trunk_units, activation, dropout, l2, name="trunk")(fused)
            representation = "trunk"
        for task in tasks:
            tower = MLP(tower_units, activation, dropout, l2, name=f"{task.name}_tower")(shared)
            outputs[task.name] = task.head(tower)
    else:
        representation = STACK_LAYER
        for task in tasks:
            per_modality = tokens
            if fusion == "late" and tower_units:
                per_modality = ModalityTowers(
                    len(names),
                    tower_units,
                    activation,
                    dropout,
                    l2,
                    name=f"{task.name}_modality_towers",
                )(tokens)
            weights = FusionWeights(
                "attention" if fusion == "attention" else "static",
                units=attention_units,
                num_modalities=len(names),
                task=task.name,
                modalities=names,
                l2=l2,
                name=f"fusion_{task.name}",
            )([per_modality, mask])
            fused = ExpertMixture(name=f"{task.name}_fused")([per_modality, weights])
            if fusion == "attention":
                fused = MLP(tower_units, activation, dropout, l2, name=f"{task.name}_tower")(fused)
            outputs[task.name] = task.head(fused)
    return MultiTaskModel(
        model_inputs, outputs, tasks=tasks, name=name, representation=representation
    )


# ----------------------------------------------------------------- inspection
def fusion_weight_layers(model: keras.Model) -> dict[str, FusionWeights]:
    """The model's `FusionWeights` layers keyed by task (in layer order)."""
    layers = {layer.key: layer for layer in model.layers if isinstance(layer, FusionWeights)}
    if not layers:
        raise ValueError(
            f"Model {model.name!r} has no FusionWeights layers (build it with "
            "builders.fusion(..., fusion='attention' or 'late'); 'concat' has no per-task "
            "weights)."
        )
    return layers


def modality_names(model: keras.Model) -> list[str]:
    """The modalities of a `fusion` model, in token order."""
    for layer in model.layers:
        if isinstance(layer, ModalityStack):
            return list(layer.modalities)
    raise ValueError(f"Model {model.name!r} has no ModalityStack (not a builders.fusion model).")


def fusion_weight_model(model: keras.Model) -> keras.Model:
    """A Keras model with `model`'s inputs returning `{task: (batch, M) weights}`.

    Example:
    >>> from mtl_keras import Binary, Regression, builders
    >>> model = builders.fusion(
    ...     [Modality("a", keras.Input((3,), name="a")),
    ...      Modality("b", keras.Input((4,), name="b"))],
    ...     [Binary("click"), Regression("price")], fusion_dim=8, trunk_units=())
    >>> x = {"a": np.ones((2, 3)), "b": np.ones((2, 4)),
    ...      "a_mask": np.ones(2), "b_mask": np.zeros(2)}  # modality b missing
    >>> w = fusion_weight_model(model).predict(x, verbose=0)
    >>> w["price"].shape, w["price"][:, 1].tolist()  # (batch, modalities); b absent
    ((2, 2), [0.0, 0.0])
    """
    outputs = {key: layer.output for key, layer in fusion_weight_layers(model).items()}
    return keras.Model(model.input, outputs, name=f"{model.name}_fusion_weights")


def fusion_weights(
    model: keras.Model, x: Any, batch_size: int | None = 256
) -> dict[str, dict[str, float]]:
    """Mean fusion weight per task and modality over the rows of `x`.

    Rows where a modality is missing give it weight 0, so on data with
    missing modalities this is "how much each task used each modality".

    Args:
        model: a `builders.fusion` model with fusion "attention" or "late".
        x: inputs as accepted by `model.predict` (dict with the masks).
        batch_size: prediction batch size.

    Returns:
        dict task -> {modality: mean weight}; each task's values sum to 1
        when every row has at least one modality.

    Example:
    >>> from mtl_keras import Binary, Regression, builders
    >>> model = builders.fusion(
    ...     [Modality("a", keras.Input((3,), name="a")),
    ...      Modality("b", keras.Input((4,), name="b"))],
    ...     [Binary("click"), Regression("price")], fusion_dim=8, trunk_units=())
    >>> x = {"a": np.ones((2, 3)), "b": np.ones((2, 4)),
    ...      "a_mask": np.ones(2), "b_mask": np.zeros(2)}  # modality b missing
    >>> fusion_weights(model, x)
    {'click': {'a': 1.0, 'b': 0.0}, 'price': {'a': 1.0, 'b': 0.0}}
    """
    names = modality_names(model)
    weights = fusion_weight_model(model).predict(
        strings_to_tensors(x), batch_size=batch_size, verbose=0
    )
    return {
        task: dict(zip(names, np.asarray(w).mean(axis=0).astype(float).tolist()))
        for task, w in weights.items()
    }
