"""Server side: SavedModel signatures serving requests that omit whole modalities."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from fusion_helpers import ALL, Encoders, build, data

from mtl_keras.builders.fusion import complete_request
from mtl_keras.builders.fusion_serving import modality_signatures
from mtl_keras.export import check_export, export_saved_model, signature_spec
from mtl_keras.export.check import run_tf1
from mtl_keras.serving import rest_payload

INPUTS = {"tabular": ["city", "age"], "image": ["image"], "text": ["text"]}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = build(Encoders(), "attention")
    path = export_saved_model(model, tmp_path_factory.mktemp("fusion_export"))
    return model, path


def _masked(x, absent):
    """`x` with the absent modalities' masks 0 and the present ones' 1."""
    out = dict(x)
    for m in ALL:
        out[f"{m}_mask"] = np.full(len(x["age"]), 0.0 if m in absent else 1.0, "float32")
    return out


def test_one_signature_per_set_of_absent_modalities(exported):
    model, path = exported
    with open(os.path.join(path, "assets.extra", "mtl_keras.json")) as f:
        meta = json.load(f)
    expected = {
        "without_tabular": ["image", "text"],
        "without_image": ["city", "age", "text"],
        "without_text": ["city", "age", "image"],
        "without_tabular_image": ["text"],
        "without_tabular_text": ["image"],
        "without_image_text": ["city", "age"],
    }
    assert {k: v["inputs"] for k, v in meta["modality_signatures"].items()} == expected
    assert meta["modality_signatures"]["without_image_text"]["absent"] == ["image", "text"]
    assert meta["signatures"]["without_image"] == ["a", "b"]  # every task
    loaded = tf.saved_model.load(path)
    assert set(loaded.signatures) == {"serving_default", *expected}
    for name, inputs in expected.items():
        # read from saved_model.pb and cross-checked against the metadata
        assert list(signature_spec(path, name)) == inputs
        assert list(signature_spec(model, name)) == inputs
    with pytest.raises(ValueError, match="no signature 'without_everything'"):
        signature_spec(path, "without_everything")


def test_a_request_without_a_modality_equals_the_full_model_with_it_masked_out(exported):
    model, path = exported
    x, _ = data()
    x["text_mask"][:5] = 0.0  # ignored by without_* signatures: present = 1
    loaded = tf.saved_model.load(path)
    for name, info in modality_signatures(list(ALL), INPUTS).items():
        request = {k: tf.constant(x[k]) for k in info["inputs"]}  # absent inputs omitted
        served = loaded.signatures[name](**request)
        expected = model.predict(_masked(x, info["absent"]), verbose=0)
        for task in ("a", "b"):
            np.testing.assert_allclose(
                served[task].numpy(), expected[task], rtol=1e-5, atol=1e-6, err_msg=name
            )
    # The same as the client-side completion sent to serving_default.
    request = {k: x[k] for k in ("city", "age", "text")}
    completed = loaded.signatures["serving_default"](
        **{k: tf.constant(v) for k, v in complete_request(request, path).items()}
    )
    served = loaded.signatures["without_image"](**{k: tf.constant(v) for k, v in request.items()})
    np.testing.assert_allclose(served["b"].numpy(), completed["b"].numpy(), rtol=1e-6, atol=1e-6)
    # The REST body a client sends: checked against that signature's inputs.
    spec = signature_spec(path, "without_image")
    body = rest_payload(request, signature_name="without_image", spec=spec)
    assert body["signature_name"] == "without_image"
    assert sorted(body["instances"][0]) == ["age", "city", "text"]
    with pytest.raises(ValueError, match="image"):
        rest_payload({**request, "image": x["image"]}, signature_name="without_image", spec=spec)


def test_tf_serving_predict_request_without_the_image(exported):
    """The PredictRequest a TF Serving client sends (no server binary here:
    its tensors are decoded and run through the TF1 session loader, the way
    TF Serving runs a signature)."""
    predict_pb2 = pytest.importorskip("tensorflow_serving.apis.predict_pb2")
    model, path = exported
    x, _ = data(6)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "fusion"
    request.model_spec.signature_name = "without_image"
    for name in ("city", "age", "text"):
        request.inputs[name].CopyFrom(tf.make_tensor_proto(x[name]))
    assert sorted(request.inputs) == ["age", "city", "text"]  # no image, no masks
    features = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
    served = run_tf1(path, features, request.model_spec.signature_name)
    expected = model.predict(_masked(x, ["image"]), verbose=0)
    np.testing.assert_allclose(served["a"], expected["a"], rtol=1e-5, atol=1e-6)
    # The export self-check runs modality signatures too (TF2 and TF1 loaders).
    report = check_export(path, model, x, signatures=["without_tabular_text"], atol=1e-5)
    assert report["max_abs_diff"]["tf1"]["without_tabular_text"]["a"] <= 1e-5


def test_a_task_signature_cannot_take_a_modality_signature_name(tmp_path):
    keras.utils.set_random_seed(0)
    model = build(Encoders(), "concat", ("tabular", "image"))
    with pytest.raises(ValueError, match="'without_image' is taken"):
        export_saved_model(model, tmp_path, signatures={"without_image": ["a"]})
