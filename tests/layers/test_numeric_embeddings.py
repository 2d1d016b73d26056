"""Numeric embeddings: values, TabularEncoder options, .keras / SavedModel / TFLite."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import mtl_keras as mk
from mtl_keras.layers.numeric_embeddings import (
    PeriodicEmbedding,
    PiecewiseLinearEncoding,
    quantile_bin_edges,
)


def _data(n: int = 256, seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    gains = np.where(rng.random(n) < 0.8, 0.0, rng.lognormal(8, 1, n)).astype("float32")
    features = {
        "city": rng.choice(["paris", "lyon", "nice"], size=n).astype(object),
        "age": rng.uniform(18, 80, size=n).astype("float32"),
        "gains": gains,
    }
    labels = {
        "click": ((features["age"] > 40) ^ (gains > 0)).astype("float32"),
        "dwell": (features["age"] / 40).astype("float32"),
    }
    return features, labels


def _model(encoder: mk.layers.TabularEncoder) -> mk.MultiTaskModel:
    keras.utils.set_random_seed(0)
    model = mk.builders.shared_bottom(
        encoder.inputs(), [mk.Binary("click"), mk.Regression("dwell")], encoder=encoder,
        trunk_units=(8,), tower_units=(4,),
    )  # fmt: skip
    model.compile("adam")
    return model


def test_quantile_edges_uniform_zero_heavy_and_constant():
    assert quantile_bin_edges(np.arange(101.0), 4) == [0.0, 25.0, 50.0, 75.0, 100.0]
    x = np.concatenate([np.zeros(900), np.arange(1.0, 101.0)])
    edges = quantile_bin_edges(x, 4)
    # Zeros are binned apart: all bins but the first resolve the non-zero values.
    assert edges[0] == 0.0 and edges[1] == 1.0 and edges[-1] == 100.0 and len(edges) == 5
    assert quantile_bin_edges(np.full(10, 3.0), 8) == [3.0, 4.0]
    with pytest.raises(ValueError, match="no finite values"):
        quantile_bin_edges(np.array([np.nan]))


def test_piecewise_linear_values_and_bin_embedding():
    ple = PiecewiseLinearEncoding([[0.0, 1.0, 3.0], [10.0, 20.0]])
    x = np.array([[-1.0, 5.0], [0.5, 15.0], [2.0, 25.0], [9.0, 20.0]], "float32")
    np.testing.assert_allclose(
        ple(x).numpy(),
        [[0, 0, 0], [0.5, 0, 0.5], [1, 0.5, 1], [1, 1, 1]],
    )
    np.testing.assert_array_equal(ple.bin_index(x).numpy(), [[0, 0], [0, 0], [1, 0], [1, 0]])
    with_emb = PiecewiseLinearEncoding([[0.0, 1.0, 3.0], [10.0, 20.0]], bin_embedding_dim=4)
    out = with_emb(x).numpy()
    assert out.shape == (4, 3 + 2 * 4) == (4, with_emb.output_dim)
    table = with_emb.bin_embedding.embeddings.numpy()  # bins: f0 -> rows 0, 1; f1 -> row 2
    np.testing.assert_allclose(out[2, 3:7], table[1])
    np.testing.assert_allclose(out[2, 7:], table[2])
    with pytest.raises(ValueError, match="strictly increasing"):
        PiecewiseLinearEncoding([[1.0, 1.0]])


def test_periodic_embedding_shapes_and_gradients():
    plr = PeriodicEmbedding(num_features=3, num_frequencies=4, embedding_dim=5)
    x = tf.constant(np.random.default_rng(0).normal(size=(7, 3)), "float32")
    with tf.GradientTape() as tape:
        y = plr(x)
        loss = tf.reduce_sum(y)
    assert tuple(y.shape) == (7, 15)
    grads = tape.gradient(loss, plr.trainable_variables)
    assert all(g is not None for g in grads)
    with pytest.raises(ValueError, match="expects 3 columns"):
        plr(tf.zeros((2, 4)))


@pytest.mark.parametrize("encoding", ["piecewise_linear", "periodic"])
def test_encoder_options_round_trip_keras_file(tmp_path, encoding):
    features, labels = _data()
    encoder = mk.layers.TabularEncoder.adapt(
        features, categorical=["city"], numeric=["age", "gains"], log_features=["gains"],
        numeric_encoding=encoding, num_bins=8, bin_embedding_dim=3,
        periodic={"num_frequencies": 4, "embedding_dim": 6},
    )  # fmt: skip
    if encoding == "piecewise_linear":
        assert set(encoder.bin_edges) == {"age", "gains"}
        assert encoder.bin_edges["gains"][0] == 0.0  # zero-heavy, on log1p values
        assert encoder.output_dim == 3 + (8 + 3) + (len(encoder.bin_edges["gains"]) - 1 + 3)
    else:
        assert encoder.output_dim == 3 + 2 * 6
    model = _model(encoder)
    model.fit(features, labels, epochs=1, batch_size=64, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    expected, got = model.predict(features, verbose=0), reloaded.predict(features, verbose=0)
    for task in ("click", "dwell"):
        np.testing.assert_allclose(got[task], expected[task], atol=1e-6)


def test_piecewise_linear_learns_a_threshold_better_than_standardized():
    # A label that flips twice along one feature: a linear-in-x input cannot
    # fit it with one hidden unit, the piecewise-linear basis can.
    rng = np.random.default_rng(1)
    x = {"v": rng.uniform(0, 3, 2048).astype("float32")}
    y = {"click": ((x["v"] > 1) & (x["v"] < 2)).astype("float32")}
    aucs = {}
    for encoding in ("standardize", "piecewise_linear"):
        enc = mk.layers.TabularEncoder.adapt(x, numeric=["v"], numeric_encoding=encoding)
        keras.utils.set_random_seed(0)
        model = mk.builders.shared_bottom(
            enc.inputs(), [mk.Binary("click")], encoder=enc, trunk_units=(1,), tower_units=()
        )
        model.compile(keras.optimizers.Adam(0.05))
        model.fit(x, y, epochs=5, batch_size=128, verbose=0)
        pred = model.predict(x, verbose=0)["click"].reshape(-1)
        aucs[encoding] = mk.evaluation.roc_auc(y["click"], pred)
    assert aucs["piecewise_linear"] > 0.97
    assert aucs["piecewise_linear"] > aucs["standardize"] + 0.05


def test_adapt_from_dataset_matches_arrays():
    features, labels = _data(300)
    kwargs = dict(
        categorical=["city"], numeric=["age", "gains"], numeric_encoding="piecewise_linear"
    )
    from_arrays = mk.layers.TabularEncoder.adapt(features, **kwargs).get_config()
    ds = tf.data.Dataset.from_tensor_slices((dict(features), labels)).batch(64)
    from_ds = mk.layers.TabularEncoder.adapt(ds, **kwargs).get_config()
    assert from_ds["vocabularies"] == from_arrays["vocabularies"]
    for name, edges in from_arrays["bin_edges"].items():
        np.testing.assert_allclose(from_ds["bin_edges"][name], edges, rtol=1e-6)
    for name, stats in from_arrays["numeric_stats"].items():
        np.testing.assert_allclose(from_ds["numeric_stats"][name], stats, rtol=1e-5)
    sample = mk.layers.TabularEncoder.adapt(ds, max_rows=100, **kwargs)
    assert sample.bin_edges != from_ds["bin_edges"]  # read only the first 100 rows
    with pytest.raises(ValueError, match=r"\['nope'\] are not in the dataset"):
        mk.layers.TabularEncoder.adapt(ds, numeric=["nope"])


def test_piecewise_linear_needs_edges():
    with pytest.raises(ValueError, match="needs bin_edges for numeric features \\['age'\\]"):
        mk.layers.TabularEncoder(numeric_stats={"age": [0, 1]}, numeric_encoding="piecewise_linear")
    with pytest.raises(ValueError, match="numeric_encoding must be one of"):
        mk.layers.TabularEncoder(numeric_stats={"age": [0, 1]}, numeric_encoding="bins")


@pytest.mark.parametrize("encoding", ["piecewise_linear", "periodic"])
def test_numeric_embeddings_export_saved_model_and_tflite_builtins(tmp_path, encoding):
    from mtl_keras.export import export_saved_model
    from mtl_keras.export.tflite import export_tflite, run_tflite

    features, labels = _data()
    numeric = {k: v for k, v in features.items() if k != "city"}
    encoder = mk.layers.TabularEncoder.adapt(
        numeric, numeric=["age", "gains"], log_features=["gains"], numeric_encoding=encoding,
        num_bins=8, bin_embedding_dim=2,
    )  # fmt: skip
    model = _model(encoder)
    model.fit(numeric, labels, epochs=1, batch_size=64, verbose=0)
    expected = model.predict(numeric, verbose=0)

    path = export_saved_model(model, tmp_path / "sm")
    serve = tf.saved_model.load(path).signatures["serving_default"]
    served = serve(**{k: tf.constant(v) for k, v in numeric.items()})
    for task in ("click", "dwell"):
        np.testing.assert_allclose(served[task].numpy(), expected[task], atol=1e-5)

    info = export_tflite(model, tmp_path / "m.tflite", select_tf_ops=False)
    assert info["select_tf_ops"] is False  # builtins only
    out, _ = run_tflite(info["path"], {k: v[:1] for k, v in numeric.items()})
    for task in ("click", "dwell"):
        np.testing.assert_allclose(out[task].reshape(-1), expected[task][:1].reshape(-1), atol=1e-4)
