"""No TensorFlow warning spam from the library's own code paths (issue #13):
an Embedding's sparse gradient is densified explicitly where a Jacobian
needs it (aggregators, the gradient-similarity probe), so TensorFlow's
"Converting IndexedSlices ... to a dense representation" never prints; loss
weighting keeps the sparse update."""

from __future__ import annotations

import io
import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

import mtl_keras as mk
from mtl_keras.callbacks.monitoring import gradient_similarity


def _embedding_model():
    keras.utils.set_random_seed(0)
    inputs = {"id": keras.Input((), dtype="int64", name="id"), "v": keras.Input((), name="v")}
    e = keras.layers.Embedding(50, 4, name="ids")(inputs["id"])
    h = keras.layers.Concatenate()([e, keras.layers.Reshape((1,))(inputs["v"])])
    h = keras.layers.Dense(8, activation="relu")(h)
    tasks = [mk.Binary("a"), mk.Regression("b")]
    return mk.MultiTaskModel(inputs, {t.name: t.head(h) for t in tasks}, tasks=tasks)


def _data(n=64):
    rng = np.random.default_rng(0)
    x = {"id": rng.integers(0, 50, n), "v": rng.normal(size=n).astype("float32")}
    y = {"a": rng.integers(0, 2, n).astype("float32"), "b": rng.normal(size=n).astype("float32")}
    return x, y


@pytest.mark.parametrize("weighting", ["uncertainty", "upgrad"])
def test_training_with_an_embedding_prints_no_indexed_slices_warning(weighting):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    tf.get_logger().addHandler(handler)
    try:
        model = _embedding_model()
        model.compile("adam", weighting=weighting, metrics={"a": [], "b": []})
        x, y = _data()
        before = model.get_layer("ids").embeddings.numpy().copy()
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        for _ in range(6):  # as TaskTensorBoard's probe does, eagerly
            sim = gradient_similarity(model, x, y)
    finally:
        tf.get_logger().removeHandler(handler)
    assert "IndexedSlices" not in stream.getvalue(), stream.getvalue()[:500]
    assert "retracing" not in stream.getvalue(), stream.getvalue()[:500]
    assert sim.shape == (2, 2) and np.allclose(np.diag(sim), 1.0)
    after = model.get_layer("ids").embeddings.numpy()
    # Rows of ids never seen stay put (Adam on a sparse/densified gradient
    # of zeros does not move them on the first epoch); seen rows train.
    seen = np.unique(x["id"])
    assert not np.allclose(after[seen], before[seen])
    unseen = np.setdiff1d(np.arange(50), seen)
    np.testing.assert_array_equal(after[unseen], before[unseen])


def test_pfor_jacobian_matches_the_loop_on_an_embedding():
    from mtl_keras.weighting import jacobian

    model = _embedding_model()
    model.compile("sgd", weighting="upgrad")
    x, y = _data(16)
    variables = model.trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        losses = model.task_losses(y, model(x, training=True))
    pfor = jacobian._pfor_jacobian(tape, losses, variables)
    loop = jacobian._loop_jacobian(tape, losses, variables)
    np.testing.assert_allclose(pfor.numpy(), loop.numpy(), rtol=1e-5, atol=1e-7)
