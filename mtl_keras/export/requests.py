"""Checking a request's raw features against a serving signature.

TF Serving's own errors for a bad request ("Expects arg[0] to be float but
string is provided", a missing placeholder, ...) are terse and arrive only
after a round trip. These checks run on the client before a request is built
and name the feature, expected and actual dtype/shape.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import numpy as np
import tensorflow as tf

from mtl_keras.export.saved_model import METADATA_FILE

SignatureSpec = Mapping[str, tf.TensorSpec]


class RequestError(ValueError):
    """A request's features do not match the serving signature."""


def signature_spec(source: Any) -> dict[str, tf.TensorSpec]:
    """The signature inputs (name -> `tf.TensorSpec`) from several sources.

    Args:
        source: a functional `keras.Model`, an exported version directory
            (reads `assets.extra/mtl_keras.json`, no TensorFlow load), a dict
            name -> `tf.TensorSpec`, or the metadata's `"inputs"` list.

    Example:
    >>> spec = signature_spec([{"name": "x", "dtype": "float32", "shape": [None, 4]}])
    >>> spec["x"].shape.as_list()
    [None, 4]
    """
    import keras  # late: this module is imported by light client code

    if isinstance(source, keras.Model):
        from mtl_keras.export.saved_model import input_signature

        return input_signature(source)
    if isinstance(source, (str, os.PathLike)):
        meta_path = os.path.join(os.fspath(source), "assets.extra", METADATA_FILE)
        with open(meta_path, encoding="utf-8") as f:
            source = json.load(f)["inputs"]
    if isinstance(source, Mapping):
        return {
            k: v if isinstance(v, tf.TensorSpec) else tf.TensorSpec(**v) for k, v in source.items()
        }
    return {
        i["name"]: tf.TensorSpec(i["shape"], tf.as_dtype(i["dtype"]), name=i["name"])
        for i in source
    }


def _kind(dtype: tf.DType) -> str:
    if dtype == tf.string:
        return "string"
    if dtype.is_bool:
        return "bool"
    if dtype.is_integer:
        return "integer"
    if dtype.is_floating:
        return "float"
    return dtype.name


def _as_array(name: str, value: Any, spec: tf.TensorSpec) -> np.ndarray:
    kind = _kind(spec.dtype)
    if kind == "string":
        arr = np.asarray(value, dtype=object)
        flat = arr.reshape(-1)
        bad = [v for v in flat if not isinstance(v, (str, bytes, np.str_, np.bytes_))]
        if bad:
            raise RequestError(
                f"Feature {name!r}: expected strings (signature dtype string), got "
                f"{type(bad[0]).__name__} value {bad[0]!r}."
            )
        return np.array(
            [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in flat], dtype=object
        ).reshape(arr.shape)
    arr = np.asarray(value)
    if arr.dtype == object or arr.dtype.kind in "USO":
        raise RequestError(
            f"Feature {name!r}: expected {spec.dtype.name} ({kind}), got strings/objects "
            f"(numpy dtype {arr.dtype})."
        )
    if kind == "integer" and arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise RequestError(
                f"Feature {name!r}: expected {spec.dtype.name} (integer), got "
                f"non-integral floats (numpy dtype {arr.dtype})."
            )
    if kind == "bool" and arr.dtype.kind != "b":
        raise RequestError(f"Feature {name!r}: expected bool, got numpy dtype {arr.dtype}.")
    if kind in ("float", "integer") and arr.dtype.kind not in "biuf":
        raise RequestError(
            f"Feature {name!r}: expected {spec.dtype.name}, got numpy dtype {arr.dtype}."
        )
    return arr.astype(spec.dtype.as_numpy_dtype)


def validate_request(
    spec: SignatureSpec | Any, features: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """Checks raw features against a signature; returns them as numpy arrays.

    Feature names must match the signature inputs exactly, values must have
    the signature's dtype kind (strings for string inputs, numbers for numeric
    ones; ints are accepted for float inputs, integral floats for int inputs)
    and its shape: same rank, same fixed dimensions, one shared batch size.
    Strings come back as `bytes` in object arrays (what TensorFlow feeds).

    Args:
        spec: the signature inputs, anything `signature_spec` accepts.
        features: dict feature name -> array-like with a batch dimension.

    Returns:
        dict name -> numpy array with the signature's dtype.

    Raises:
        RequestError (a ValueError) naming the offending feature.

    Example:
    >>> spec = signature_spec([{"name": "x", "dtype": "float32", "shape": [None, 2]}])
    >>> validate_request(spec, {"x": [[1, 2]]})["x"].dtype
    dtype('float32')
    >>> validate_request(spec, {"y": [[1, 2]]})
    Traceback (most recent call last):
    ...
    mtl_keras.export.requests.RequestError: Missing feature(s) ['x'] ...
    """
    spec = signature_spec(spec) if not _is_spec(spec) else spec
    if not isinstance(features, Mapping):
        raise RequestError(
            f"Features must be a dict feature name -> values, got {type(features).__name__}."
        )
    missing = [k for k in spec if k not in features]
    unexpected = [k for k in features if k not in spec]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"Missing feature(s) {missing}")
        if unexpected:
            parts.append(f"unexpected feature(s) {unexpected}")
        raise RequestError("; ".join(parts) + f" (the signature's inputs are {sorted(spec)}).")
    out: dict[str, np.ndarray] = {}
    batch: tuple[str, int] | None = None
    for name, s in spec.items():
        arr = _as_array(name, features[name], s)
        expected = s.shape
        if expected.rank is not None:
            if arr.ndim != expected.rank:
                raise RequestError(
                    f"Feature {name!r}: expected rank {expected.rank} (shape "
                    f"{_shape_str(expected)}), got shape {arr.shape}."
                )
            for axis, (want, got) in enumerate(zip(expected.as_list(), arr.shape)):
                if want is not None and want != got:
                    raise RequestError(
                        f"Feature {name!r}: expected shape {_shape_str(expected)}, got "
                        f"{arr.shape} (dimension {axis} must be {want})."
                    )
        if arr.ndim == 0:
            raise RequestError(f"Feature {name!r}: needs a batch dimension, got a scalar.")
        if batch is None:
            batch = (name, arr.shape[0])
        elif arr.shape[0] != batch[1]:
            raise RequestError(
                f"Feature {name!r} has batch size {arr.shape[0]} but {batch[0]!r} has "
                f"{batch[1]}: all features need the same number of rows."
            )
        out[name] = arr
    return out


def _is_spec(spec: Any) -> bool:
    return isinstance(spec, Mapping) and all(isinstance(v, tf.TensorSpec) for v in spec.values())


def _shape_str(shape: tf.TensorShape) -> str:
    return "(" + ", ".join("batch" if d is None else str(d) for d in shape.as_list()) + ")"
