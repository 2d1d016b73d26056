"""Gradient-similarity and gate-utilisation probes used by `TaskTensorBoard`.

Everything here runs outside the train step, on a fixed batch, so it costs
nothing when unused and never changes what the optimizer sees.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from mtl_keras.weighting.base import StepContext
from mtl_keras.weighting.jacobian import ParameterJacobian


def unpack_batch(data: Any) -> tuple[Any, Any, Any]:
    """`(x, y, sample_weight)` from `(x, y)`, `(x, y, sw)` or a `tf.data.Dataset`
    (its first batch)."""
    if isinstance(data, tf.data.Dataset):
        data = next(iter(data))
    if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
        raise ValueError(
            "`similarity_data` must be (x, y), (x, y, sample_weight) or a tf.data.Dataset "
            f"of such batches, got {type(data).__name__}."
        )
    x, y = data[0], data[1]
    sw = data[2] if len(data) == 3 else None
    return x, y, sw


def task_gradients(model: Any, x: Any, y: Any, sample_weight: Any = None) -> np.ndarray:
    """Per-task gradients of the shared parameters, flattened: `(tasks, params)`.

    The rows of the same `ParameterJacobian` the gradient aggregators use, on
    the model's own per-task losses (`model.task_losses`, labelled rows only)
    in inference mode (`training=False`: no dropout noise, no batch-norm
    statistics update), with `model.variable_groups()` picking the shared
    variables. A task whose loss does not reach a shared variable gets zeros
    there.

    Args:
        model: a compiled `MultiTaskModel`.
        x, y, sample_weight: one batch, as for `fit`.

    Example:
    >>> g = task_gradients(model, x, y)  # shared: the (1 + 1) -> 8 trunk Dense
    >>> g.shape == (len(model.tasks), 2 * 8 + 8)
    True
    """
    shared, _, _ = model.variable_groups()
    if not shared:
        raise ValueError(f"Model {model.name!r} has no shared trainable variables.")
    variables = [model.trainable_variables[i] for i in shared]
    with tf.GradientTape(persistent=True) as tape:
        # The model's own masked per-task losses, so the probe measures exactly
        # what training optimizes.
        losses = model.task_losses(y, model(x, training=False), sample_weight)
    ctx = StepContext(
        tape=tape,
        task_losses=losses,
        regularization_loss=None,
        variables=variables,
        shared=list(range(len(variables))),
        task_specific=[[] for _ in model.task_names],
        own=[],
        scale_loss=lambda loss: loss,
    )
    jacobian = ParameterJacobian().matrix(ctx, variables)
    del tape
    return np.asarray(jacobian, dtype="float64")


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity of the rows; NaN where a row is all zeros.

    Example:
    >>> cosine_matrix(np.array([[1.0, 0.0], [1.0, 1.0]])).round(3).tolist()
    [[1.0, 0.707], [0.707, 1.0]]
    """
    vectors = np.asarray(vectors, dtype="float64")
    norms = np.linalg.norm(vectors, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (vectors @ vectors.T) / np.outer(norms, norms)


def gradient_similarity(model: Any, x: Any, y: Any, sample_weight: Any = None) -> np.ndarray:
    """Task-to-task cosine similarity of the shared-parameter gradients.

    Returns a `(tasks, tasks)` matrix in `model.task_names` order: +1 means
    two tasks push the shared parameters the same way, -1 opposite ways
    (conflict), NaN a task with no labelled row in the batch.

    Example:
    >>> sim = gradient_similarity(model, x, y)
    >>> sim.shape, bool(np.allclose(np.diag(sim), 1.0))
    ((2, 2), True)
    """
    return cosine_matrix(task_gradients(model, x, y, sample_weight))


def heatmap_rgb(matrix: np.ndarray, cell: int = 24) -> np.ndarray:
    """A `[-1, 1]` matrix as an RGB uint8 image (blue -1, white 0, red +1, grey NaN).

    Each entry becomes a `cell`x`cell` square with a 1-pixel dark grid line,
    row i / column j in task order. Plain numpy, so no plotting dependency.

    Example:
    >>> heatmap_rgb(np.array([[1.0, -1.0], [-1.0, 1.0]]), cell=4).shape
    (8, 8, 3)
    """
    m = np.clip(np.asarray(matrix, dtype="float64"), -1.0, 1.0)
    pos, neg = np.clip(m, 0, 1), np.clip(-m, 0, 1)
    rgb = np.stack([1.0 - neg, 1.0 - pos - neg, 1.0 - pos], axis=-1)
    rgb[np.isnan(m)] = 0.6
    image = np.kron(rgb, np.ones((cell, cell, 1)))
    image[::cell, :, :] = 0.2
    image[:, ::cell, :] = 0.2
    return (image * 255).round().astype("uint8")


def gate_weights_model(model: keras.Model) -> keras.Model | None:
    """A model returning `{gate key: weights}`, or None if `model` has no gates.

    Hook for `mtl_keras.builders.gates`: models without `Gate` layers
    (shared-bottom, ...) make gate logging a no-op.
    """
    try:
        from mtl_keras.builders.gates import gate_model
        from mtl_keras.layers.gate import Gate
    except ImportError:  # pragma: no cover - gates helper not available
        return None
    if not any(isinstance(layer, Gate) for layer in model.layers):
        return None
    return gate_model(model)
