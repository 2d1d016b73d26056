"""Modality encoders for `builders.fusion` (any Keras model works too): a
small CNN, a BiLSTM over token ids, and keras-hub text backbones (MiniLM)."""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np

from mtl_keras.builders.common import validate_count, validate_units


def image_cnn(
    input_shape: Sequence[int],
    filters: Sequence[int] = (16, 32),
    units: int | None = 64,
    name: str = "image_cnn",
) -> keras.Model:
    """A small CNN: per filter count, Conv2D(3x3, relu) + MaxPool, then
    Flatten + Dense(units, relu) (keeps where the ink is, which global
    pooling would average away), or global average pooling when `units` is
    None. Output `(batch, units)` (or `(batch, filters[-1])`).

    Args:
        input_shape: image shape without the batch, e.g. `(28, 28, 1)`.
        filters: conv widths (non-empty).
        units: width of the dense layer after flattening; None: global
            average pooling instead (any image size).
        name: model name.

    Example:
    >>> tuple(image_cnn((28, 28, 1), (4, 8), units=16).output.shape)
    (None, 16)
    """
    validate_units(filters, "filters")
    if units is not None:
        validate_count(units, "units")
    x = inputs = keras.Input(tuple(input_shape))
    for i, f in enumerate(filters):
        x = keras.layers.Conv2D(f, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        x = keras.layers.MaxPooling2D(name=f"pool{i}")(x)
    if units is None:
        x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    else:
        x = keras.layers.Flatten(name="flatten")(x)
        x = keras.layers.Dense(units, activation="relu", name="dense")(x)
    return keras.Model(inputs, x, name=name)


def text_bilstm(
    vocabulary_size: int,
    embedding_dim: int = 16,
    units: int = 16,
    name: str = "text_bilstm",
) -> keras.Model:
    """Token ids `(batch, steps)` -> Embedding -> BiLSTM -> `(batch, 2 * units)`.

    No Keras masking: padding id 0 is an ordinary token, so a row of all
    padding (a missing text) runs on CPU and cuDNN alike; the fusion mask is
    what removes a missing text.

    Args:
        vocabulary_size: number of token ids (0 is padding).
        embedding_dim: embedding width.
        units: LSTM units per direction.
        name: model name.

    Example:
    >>> tuple(text_bilstm(50, 4, 3).output.shape)
    (None, 6)
    """
    validate_count(vocabulary_size, "vocabulary_size", minimum=2)
    validate_count(embedding_dim, "embedding_dim")
    validate_count(units, "units")
    ids = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(vocabulary_size, embedding_dim, name="embedding")(ids)
    x = keras.layers.Bidirectional(keras.layers.LSTM(units), name="bilstm")(x)
    return keras.Model(ids, x, name=name)


# keras-hub text backbones (BertBackbone & co.) take these inputs.
TEXT_BACKBONE_INPUTS = ("token_ids", "segment_ids", "padding_mask")


def text_backbone_modality(
    backbone: keras.Model,
    name: str = "text",
    sequence_length: int | None = None,
    freeze: bool = False,
) -> Any:
    """A keras-hub text backbone (e.g. the offline MiniLM) as a fusion modality.

    The modality's inputs are the backbone's own token inputs
    (`token_ids`, `segment_ids` when it has them, `padding_mask`, int32,
    `(batch, sequence_length)`), named so that a keras-hub preprocessor's
    output (`tokenize`) plugs straight into the model; the backbone's
    `sequence_output` is mean-pooled over the real tokens. A row without text
    has mask `<name>_mask` 0 (its token inputs may be all zeros).

    Args:
        backbone: a keras-hub text backbone, e.g.
            `keras_hub.models.BertBackbone.from_preset(path)`.
        name: the modality name.
        sequence_length: fixed token length of the inputs (the serving
            signature's shape); None: any length.
        freeze: keep the backbone's pretrained weights fixed.

    Returns:
        A `builders.fusion.Modality`.

    Example:
    >>> import keras_hub
    >>> bert = keras_hub.models.BertBackbone(
    ...     vocabulary_size=30, num_layers=1, num_heads=2, hidden_dim=8,
    ...     intermediate_dim=16, max_sequence_length=8)
    >>> m = text_backbone_modality(bert, sequence_length=8, freeze=True)
    >>> sorted(m.inputs), tuple(m.inputs["token_ids"].shape), m.freeze
    (['padding_mask', 'segment_ids', 'token_ids'], (None, 8), True)
    """
    from mtl_keras.builders.fusion import Modality

    struct = getattr(backbone, "input", None)
    if not isinstance(backbone, keras.Model) or not isinstance(struct, dict):
        raise ValueError(
            f"Modality {name!r}: expected a keras-hub text backbone (a keras.Model taking a "
            f"dict of {list(TEXT_BACKBONE_INPUTS)}), got {type(backbone).__name__}."
        )
    missing = {"token_ids", "padding_mask"} - set(struct)
    unknown = set(struct) - set(TEXT_BACKBONE_INPUTS)
    if missing or unknown:
        raise ValueError(
            f"Modality {name!r}: the backbone's inputs are {sorted(struct)}; expected "
            "token_ids and padding_mask (and optionally segment_ids)."
        )
    if sequence_length is not None:
        validate_count(sequence_length, "sequence_length")
    inputs = {
        key: keras.Input((sequence_length,), dtype="int32", name=key)
        for key in TEXT_BACKBONE_INPUTS
        if key in struct
    }
    return Modality(name, inputs, backbone, freeze=freeze)


def tokenize(
    preprocessor: Any, texts: Sequence[str | None], name: str = "text"
) -> dict[str, np.ndarray]:
    """Token inputs and presence mask of a `text_backbone_modality`.

    Args:
        preprocessor: a keras-hub text preprocessor returning `token_ids`,
            `padding_mask` (and `segment_ids`), e.g.
            `keras_hub.models.BertTextClassifierPreprocessor(tokenizer,
            sequence_length=32)`, or any callable doing the same.
        texts: one string per row; None or "" marks a row without text.
        name: the modality name (the mask is `<name>_mask`).

    Returns:
        dict of int32 arrays `(rows, length)` per token input, all zeros for
        rows without text, and `<name>_mask` (float32, 0 for those rows).

    Example:
    >>> def toy(texts):  # stands in for a keras-hub preprocessor
    ...     ids = np.array([[1, len(t), 2] for t in texts])
    ...     return {"token_ids": ids, "padding_mask": ids > 0}
    >>> out = tokenize(toy, ["hello", None])
    >>> out["token_ids"].tolist(), out["text_mask"].tolist()
    ([[1, 5, 2], [0, 0, 0]], [1.0, 0.0])
    """
    texts = list(texts)
    present = np.array([t is not None and t != "" for t in texts])
    features = preprocessor([t if t is not None else "" for t in texts])
    out = {}
    for key, value in features.items():
        if key not in TEXT_BACKBONE_INPUTS:
            continue
        array = np.asarray(keras.ops.convert_to_numpy(value)).astype("int32")
        array[~present] = 0
        out[key] = array
    if "token_ids" not in out or "padding_mask" not in out:
        raise ValueError(
            f"The preprocessor returned {sorted(features)}; expected token_ids and padding_mask."
        )
    out[f"{name}_mask"] = present.astype("float32")
    return out
