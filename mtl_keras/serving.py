"""Client helpers for TF Serving: REST and gRPC predict payloads and responses.

Build requests from raw feature dicts (the same dicts `model.predict` takes),
send them with any HTTP/gRPC client, decode the answer into per-task numpy
arrays. With a signature spec (`mtl_keras.export.signature_spec(path)`) the
features are checked first (`validate_request`), so a wrong name, dtype or
shape fails on the client with a message naming the feature.

Example (server started with `docker run -p 8501:8501 ... tensorflow/serving`):
>>> rest_url("localhost:8501", "census_income")
'http://localhost:8501/v1/models/census_income:predict'
>>> body = rest_payload({"age": np.array([31.0, 45.0])})
>>> sorted(decode_rest_request(body))  # what the server reads
['age']

Send `body` with any client (`requests.post(url, json=body).json()`); the
answer decodes into per-task arrays (here a stand-in for the server's answer):

>>> answer = rest_response({"income": np.array([[0.2], [0.7]]), "age": np.array([[30.0], [44.0]])})
>>> decode_rest_response(answer)["income"].shape
(2, 1)
"""

from __future__ import annotations

import base64
import json
from typing import Any, Mapping, Sequence

import numpy as np

from mtl_keras.export.requests import RequestError, check_numbers, validate_request

DEFAULT_SIGNATURE = "serving_default"


# ------------------------------------------------------------------ REST
def rest_url(
    host: str,
    model_name: str,
    version: int | None = None,
    *,
    label: str | None = None,
    verb: str = "predict",
) -> str:
    """`http://host/v1/models/<name>[/versions/<v> | /labels/<l>]:<verb>`.

    Args:
        host: `"localhost:8501"` or a full `http(s)://` base URL.
        model_name: the served model name (`MODEL_NAME` / models.config name).
        version: a specific version; `None` is the latest served one.
        label: a version label from models.config (instead of `version`).
        verb: `"predict"` (also `"classify"`, `"regress"`).

    Example:
    >>> rest_url("localhost:8501", "census_income", 2)
    'http://localhost:8501/v1/models/census_income/versions/2:predict'
    """
    if version is not None and label is not None:
        raise ValueError("Pass `version` or `label`, not both.")
    base = host if host.startswith(("http://", "https://")) else f"http://{host}"
    url = f"{base.rstrip('/')}/v1/models/{model_name}"
    if version is not None:
        url += f"/versions/{int(version)}"
    elif label is not None:
        url += f"/labels/{label}"
    return f"{url}:{verb}"


def _json_value(value: Any) -> Any:
    """numpy/bytes -> JSON: bytes that are not UTF-8 go as {"b64": ...}."""
    if isinstance(value, np.ndarray):
        if value.dtype == object or value.dtype.kind in "SU":
            return (
                [_json_value(v) for v in value.tolist()]
                if value.ndim
                else _json_value(value.item())
            )
        return value.tolist()  # numpy scalars -> Python numbers (NaN stays NaN)
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            # TF Serving's REST API decodes {"b64": ...} into binary strings.
            return {"b64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _arrays(features: Mapping[str, Any], spec: Any) -> dict[str, np.ndarray]:
    """Validated arrays: checked against `spec` when given; without it, still
    one shared non-empty batch and finite numbers (JSON has no NaN/Infinity)."""
    if spec is not None:
        return validate_request(spec, features)
    if not isinstance(features, Mapping) or not features:
        raise RequestError("Features must be a non-empty dict feature name -> values.")
    out = {}
    for k, v in features.items():
        arr = np.asarray(v, dtype=object if _is_text(v) else None)
        if arr.dtype.kind in "iufcb":
            arr = check_numbers(k, arr)
        elif arr.dtype == object and not _is_text(v):
            raise RequestError(
                f"Feature {k!r}: values must be numbers or strings, got {arr.reshape(-1)[:1]!r} "
                "(mixed or non-numeric objects; numbers too large for int64?)."
            )
        out[k] = arr
    sizes = {k: (a.shape[0] if a.ndim else None) for k, a in out.items()}
    if len(set(sizes.values())) > 1 or None in sizes.values():
        raise RequestError(f"All features need the same batch dimension, got sizes {sizes}.")
    if 0 in sizes.values():
        raise RequestError("Empty batch (0 rows): send at least one row.")
    return out


def _is_text(v: Any) -> bool:
    flat = np.asarray(v, dtype=object).reshape(-1)
    return flat.size > 0 and isinstance(flat[0], (str, bytes, np.str_, np.bytes_))


def rest_payload(
    features: Mapping[str, Any],
    *,
    columnar: bool = False,
    signature_name: str = DEFAULT_SIGNATURE,
    spec: Any = None,
) -> dict[str, Any]:
    """A JSON-safe `:predict` body from raw features.

    Args:
        features: dict feature -> array-like with a batch dimension.
        columnar: `False` for the row format `{"instances": [{feature:
            value}, ...]}`, `True` for `{"inputs": {feature: [values]}}`.
        signature_name: the signature to call (e.g. a subset signature).
        spec: optional signature inputs (see `mtl_keras.export.signature_spec`)
            to validate names, dtypes and shapes first.

    Raises:
        RequestError: NaN/±Inf or values the signature dtype cannot hold
            (named by feature), an empty batch, or (with `spec`) a feature
            that does not match the signature. The body is always valid JSON
            (`json.dumps(body, allow_nan=False)` succeeds).

    Example:
    >>> rest_payload({"city": np.array(["paris"]), "age": np.array([31.0])})
    {'signature_name': 'serving_default', 'instances': [{'city': 'paris', 'age': 31.0}]}
    """
    arrays = _arrays(features, spec)
    body: dict[str, Any] = {"signature_name": signature_name}
    if columnar:
        body["inputs"] = {k: _json_value(v) for k, v in arrays.items()}
    else:
        n = next(iter(arrays.values())).shape[0]
        body["instances"] = [{k: _json_value(v[i]) for k, v in arrays.items()} for i in range(n)]
    return body


def _from_json(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _to_array(value: Any) -> np.ndarray:
    value = _from_json(value)
    flat = np.asarray(value, dtype=object).reshape(-1)
    if flat.size and isinstance(flat[0], (str, bytes)):
        return np.array(
            [v.encode("utf-8") if isinstance(v, str) else v for v in flat], dtype=object
        ).reshape(np.shape(np.asarray(value, dtype=object)))
    return np.asarray(value)


def decode_rest_request(body: Mapping[str, Any] | str | bytes) -> dict[str, np.ndarray]:
    """A `:predict` body back to feature arrays (strings as bytes), for tests/logs.

    Example:
    >>> decode_rest_request({"instances": [{"x": [1.0, 2.0]}]})["x"].shape
    (1, 2)
    """
    if isinstance(body, (str, bytes)):
        body = json.loads(body)
    if "instances" in body:
        rows = body["instances"]
        if not rows or not all(isinstance(r, dict) for r in rows):
            raise ValueError("`instances` must be a non-empty list of feature dicts.")
        return {k: _to_array([r[k] for r in rows]) for k in rows[0]}
    if "inputs" in body and isinstance(body["inputs"], dict):
        arrays = {k: _to_array(v) for k, v in body["inputs"].items()}
        if not arrays or any(a.ndim == 0 or a.shape[0] == 0 for a in arrays.values()):
            raise ValueError("`inputs` must map each feature to a non-empty batch of values.")
        return arrays
    raise ValueError("Not a named-input predict body: expected 'instances' or 'inputs'.")


def rest_response(outputs: Mapping[str, Any], *, columnar: bool = False) -> dict[str, Any]:
    """The JSON TF Serving returns for `outputs` (for fakes and tests).

    Row format answers `{"predictions": [{task: value}, ...]}` (a bare list
    per row when there is one output); columnar answers `{"outputs": {...}}`
    (a bare value when there is one output).

    Example:
    >>> rest_response({"click": np.array([[0.25]])})
    {'predictions': [[0.25]]}
    """
    arrays = {k: np.asarray(v) for k, v in outputs.items()}
    if columnar:
        encoded = {k: _json_value(v) for k, v in arrays.items()}
        return {"outputs": next(iter(encoded.values())) if len(encoded) == 1 else encoded}
    n = next(iter(arrays.values())).shape[0]
    if len(arrays) == 1:
        (value,) = arrays.values()
        return {"predictions": _json_value(value)}
    return {"predictions": [{k: _json_value(v[i]) for k, v in arrays.items()} for i in range(n)]}


def decode_rest_response(
    body: Mapping[str, Any] | str | bytes, output_names: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """A `:predict` JSON response -> dict task -> numpy array (batch first).

    Args:
        body: the parsed JSON (or its text).
        output_names: the signature's outputs; needed to name the output when
            the signature has exactly one (TF Serving then omits the name).

    Raises:
        RuntimeError: the server answered `{"error": ...}`.

    Example:
    >>> decode_rest_response({"predictions": [{"a": [0.5], "b": 1.0}]})["a"]
    array([[0.5]])
    """
    if isinstance(body, (str, bytes)):
        body = json.loads(body)
    if "error" in body:
        raise RuntimeError(f"TF Serving error: {body['error']}")

    def single(value: Any) -> dict[str, np.ndarray]:
        if not output_names or len(output_names) != 1:
            raise ValueError(
                "The response has one unnamed output: pass `output_names=[task]` "
                "(the signature's single output)."
            )
        return {output_names[0]: _to_array(value)}

    if "predictions" in body:
        rows = body["predictions"]
        if rows and all(isinstance(r, dict) and "b64" not in r for r in rows):
            return {k: _to_array([r[k] for r in rows]) for k in rows[0]}
        return single(rows)
    if "outputs" in body:
        out = body["outputs"]
        if isinstance(out, dict) and "b64" not in out:
            return {k: _to_array(v) for k, v in out.items()}
        return single(out)
    raise ValueError("Not a predict response: expected 'predictions', 'outputs' or 'error'.")


# ------------------------------------------------------------------ gRPC
def grpc_request(
    model_name: str,
    features: Mapping[str, Any],
    *,
    signature_name: str = DEFAULT_SIGNATURE,
    version: int | None = None,
    spec: Any = None,
) -> Any:
    """A `tensorflow_serving.apis.predict_pb2.PredictRequest` from raw features.

    Send it with `PredictionServiceStub(grpc.insecure_channel("host:8500"))
    .Predict(request, timeout)`.

    Args:
        model_name: the served model name.
        features: dict feature -> array-like with a batch dimension.
        signature_name: the signature to call.
        version: a specific version (`None`: latest).
        spec: optional signature inputs to validate against (recommended:
            without it dtypes are numpy's, e.g. float64 for Python floats,
            which TF Serving rejects for float32 inputs).

    Example:
    >>> req = grpc_request("m", {"x": np.zeros((2, 3), "float32")})
    >>> list(req.inputs["x"].tensor_shape.dim)[1].size
    3
    """
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    arrays = _arrays(features, spec)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = int(version)
    for name, arr in arrays.items():
        if arr.dtype == object:
            arr = np.array(
                [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in arr.reshape(-1)],
                dtype=object,
            ).reshape(arr.shape)
        request.inputs[name].CopyFrom(tf.make_tensor_proto(arr))
    return request


def decode_grpc_request(request: Any) -> dict[str, np.ndarray]:
    """`PredictRequest.inputs` -> dict feature -> numpy array (strings as bytes)."""
    import tensorflow as tf

    return {k: tf.make_ndarray(v) for k, v in request.inputs.items()}


def grpc_response(outputs: Mapping[str, Any], model_name: str = "model", version: int = 1) -> Any:
    """A `PredictResponse` carrying `outputs` (what the server returns; for fakes/tests)."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    response = predict_pb2.PredictResponse()
    response.model_spec.name = model_name
    response.model_spec.version.value = version
    for k, v in outputs.items():
        response.outputs[k].CopyFrom(tf.make_tensor_proto(np.asarray(v)))
    return response


def decode_grpc_response(response: Any) -> dict[str, np.ndarray]:
    """`PredictResponse` -> dict task -> numpy array.

    Example:
    >>> decode_grpc_response(grpc_response({"click": [[0.5]]}))["click"].shape
    (1, 1)
    """
    import tensorflow as tf

    return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
