"""TFLite variants vs Keras, and the TabularEncoder (string input) model.

Tolerances (max |tflite - keras| per task, trained toy model, sigmoid click
and regression dwell of magnitude ~3): float32 1e-5, float16 1e-2,
dynamic_int8 5e-2, full_int8 1e-1 (`DEFAULT_TOLERANCES`).
"""

from __future__ import annotations

import numpy as np
import pytest
from _support import toy_data, toy_model
from test_saved_model import _tabular_model

from mtl_keras.export.tflite import (
    DEFAULT_TOLERANCES,
    TFLiteConversionError,
    export_tflite,
    tflite_report,
)


@pytest.fixture(scope="module")
def trained_toy():
    model = toy_model()
    x, y = toy_data(256)
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    return model, x


@pytest.mark.parametrize("quantization", ["float32", "float16", "dynamic_int8", "full_int8"])
def test_variants_within_tolerance(trained_toy, tmp_path, quantization):
    model, x = trained_toy
    info = export_tflite(
        model, tmp_path / f"{quantization}.tflite", quantization, representative_data={"x": x[:64]}
    )
    assert info["select_tf_ops"] is False
    report = tflite_report(model, info["path"], {"x": x[:64]}, quantization=quantization)
    assert report["interpreter"] == "ai_edge_litert"
    assert report["size_bytes"] == info["size_bytes"] > 0
    assert set(report["max_abs_diff"]) == {"click", "dwell"}
    assert max(report["max_abs_diff"].values()) <= DEFAULT_TOLERANCES[quantization]


def test_bad_arguments(trained_toy, tmp_path):
    model, _ = trained_toy
    with pytest.raises(ValueError, match="`quantization` must be one of"):
        export_tflite(model, tmp_path / "m.tflite", "int4")
    with pytest.raises(ValueError, match="needs `representative_data`"):
        export_tflite(model, tmp_path / "m.tflite", "full_int8")


@pytest.mark.slow
def test_tabular_encoder_model_needs_select_tf_ops(tmp_path):
    model, features = _tabular_model()
    # Builtins alone cannot express StringLookup's hash table: clear error.
    try:
        info = export_tflite(model, tmp_path / "strict.tflite", select_tf_ops=False)
    except TFLiteConversionError as e:
        assert "select_tf_ops=True" in str(e)
        strict_ok = False
    else:
        strict_ok = True
        assert info["select_tf_ops"] is False
    info = export_tflite(model, tmp_path / "auto.tflite")
    assert info["select_tf_ops"] is (not strict_ok)
    report = tflite_report(model, info["path"], features, quantization="float32")
    # Flex (select TF ops) models need tf.lite's interpreter.
    if info["select_tf_ops"]:
        assert report["interpreter"] == "tf.lite"
    assert max(report["max_abs_diff"].values()) <= 1e-5
    np.testing.assert_array_equal(sorted(report["max_abs_diff"]), ["click", "segment"])


@pytest.mark.slow
@pytest.mark.parametrize("rows", [1, 3])
def test_tabular_encoder_model_runs_any_batch_size(tmp_path, rows):
    # A 1-row batch used to fail in TFLite ("CONCATENATION t->dims->size !=
    # t0->dims->size"): the embedding lookup was inferred as a scalar.
    model, features = _tabular_model()
    info = export_tflite(model, tmp_path / "m.tflite")
    subset = {k: np.asarray(v)[:rows] for k, v in features.items()}
    report = tflite_report(model, info["path"], subset, quantization="float32")
    assert max(report["max_abs_diff"].values()) <= 1e-5
