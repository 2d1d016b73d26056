"""REST/gRPC payload builders and response decoding (no model server here)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf
from _support import toy_data, toy_model

from mtl_keras import serving
from mtl_keras.export import RequestError, export_saved_model, signature_spec

SPEC = signature_spec(
    [
        {"name": "city", "dtype": "string", "shape": [None]},
        {"name": "x", "dtype": "float32", "shape": [None, 2]},
    ]
)
FEATURES = {
    "city": np.array(["paris", "zürich", "lyon"], dtype=object),
    "x": np.arange(6, dtype="float32").reshape(3, 2),
}


def test_rest_url():
    assert serving.rest_url("localhost:8501", "census_income") == (
        "http://localhost:8501/v1/models/census_income:predict"
    )
    assert serving.rest_url("https://h/", "m", 3) == "https://h/v1/models/m/versions/3:predict"
    assert (
        serving.rest_url("h:1", "m", label="canary")
        == "http://h:1/v1/models/m/labels/canary:predict"
    )


@pytest.mark.parametrize("columnar", [False, True])
def test_rest_payload_round_trip(columnar):
    body = serving.rest_payload(FEATURES, columnar=columnar, signature_name="click_only", spec=SPEC)
    text = json.dumps(body)  # JSON-safe
    assert body["signature_name"] == "click_only"
    assert ("inputs" in body) is columnar and ("instances" in body) is not columnar
    back = serving.decode_rest_request(text)
    assert back["city"].tolist() == [s.encode() for s in FEATURES["city"]]
    np.testing.assert_array_equal(back["x"], FEATURES["x"])


def test_non_utf8_bytes_go_as_b64():
    body = serving.rest_payload({"blob": np.array([b"\xff\x00", b"ok"], dtype=object)})
    assert body["instances"][0]["blob"] == {"b64": "/wA="}
    assert body["instances"][1]["blob"] == "ok"
    assert serving.decode_rest_request(body)["blob"].tolist() == [b"\xff\x00", b"ok"]


def test_payload_builders_validate_against_spec():
    with pytest.raises(RequestError, match=r"Missing feature\(s\) \['x'\]"):
        serving.rest_payload({"city": ["a"]}, spec=SPEC)
    with pytest.raises(RequestError, match="'x': expected float32"):
        serving.grpc_request("m", {"city": ["a"], "x": [["a", "b"]]}, spec=SPEC)
    with pytest.raises(RequestError, match="'x': expected shape"):
        serving.grpc_request("m", {"city": ["a"], "x": [[1.0, 2.0, 3.0]]}, spec=SPEC)


def test_grpc_request_round_trip():
    req = serving.grpc_request("census_income", FEATURES, version=2, signature_name="s", spec=SPEC)
    assert req.model_spec.name == "census_income"
    assert req.model_spec.version.value == 2
    assert req.model_spec.signature_name == "s"
    assert tf.as_dtype(req.inputs["x"].dtype) == tf.float32
    from tensorflow_serving.apis import predict_pb2

    parsed = predict_pb2.PredictRequest.FromString(req.SerializeToString())
    back = serving.decode_grpc_request(parsed)
    assert back["city"].tolist() == [s.encode() for s in FEATURES["city"]]
    np.testing.assert_array_equal(back["x"], FEATURES["x"])


@pytest.fixture(scope="module")
def local_outputs(tmp_path_factory):
    """Outputs of the exported signature run locally, as the server would."""
    model = toy_model()
    x, _ = toy_data(4)
    base = tmp_path_factory.mktemp("toy")
    path = export_saved_model(model, base, signatures={"click_only": ["click"]})
    sigs = tf.saved_model.load(path).signatures
    body = serving.rest_payload({"x": x}, spec=signature_spec(path))
    feats = serving.decode_rest_request(json.loads(json.dumps(body)))
    outs = {name: {k: v.numpy() for k, v in sigs[name](**feats).items()} for name in sigs}
    yield outs, model.predict(x, verbose=0)
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("columnar", [False, True])
def test_decode_rest_response_from_local_signature(local_outputs, columnar):
    outs, expected = local_outputs
    body = json.loads(json.dumps(serving.rest_response(outs["serving_default"], columnar=columnar)))
    decoded = serving.decode_rest_response(body)
    assert sorted(decoded) == ["click", "dwell"]
    for task in decoded:
        assert decoded[task].shape == expected[task].shape
        np.testing.assert_allclose(decoded[task], expected[task], atol=1e-5)
    # One-output signature: TF Serving drops the name, the caller supplies it.
    single = json.loads(json.dumps(serving.rest_response(outs["click_only"], columnar=columnar)))
    with pytest.raises(ValueError, match="output_names"):
        serving.decode_rest_response(single)
    click = serving.decode_rest_response(single, output_names=["click"])["click"]
    np.testing.assert_allclose(click, expected["click"], atol=1e-5)


def test_decode_grpc_response_from_local_signature(local_outputs):
    outs, expected = local_outputs
    from tensorflow_serving.apis import predict_pb2

    wire = serving.grpc_response(outs["serving_default"]).SerializeToString()
    decoded = serving.decode_grpc_response(predict_pb2.PredictResponse.FromString(wire))
    for task in ("click", "dwell"):
        np.testing.assert_allclose(decoded[task], expected[task], atol=1e-5)


def test_rest_error_response():
    with pytest.raises(RuntimeError, match="TF Serving error: bad input"):
        serving.decode_rest_response({"error": "bad input"})


@pytest.mark.skip(
    reason="No TF Serving model server binary (tensorflow_model_server/docker) "
    "is installable on this machine; see README 'Serving with TF Serving'."
)
def test_against_real_model_server():
    """Would start tensorflow_model_server on an export and query REST + gRPC."""
