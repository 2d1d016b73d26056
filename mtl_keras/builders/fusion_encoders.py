"""Small modality encoders for `builders.fusion` (any Keras model works too)."""

from __future__ import annotations

from typing import Sequence

import keras

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
