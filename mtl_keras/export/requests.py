"""Checking a request's raw features against a serving signature.

TF Serving's own errors for a bad request ("Expects arg[0] to be float but
string is provided", a missing placeholder, ...) are terse and arrive only
after a round trip. These checks run on the client before a request is built
and name the feature, expected and actual dtype/shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from mtl_keras.export.signature import SignatureSpec, signature_spec
from mtl_keras.finite import first_bad, nonfinite_mask

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

__all__ = ["RequestError", "SignatureSpec", "check_numbers", "signature_spec", "validate_request"]


class RequestError(ValueError):
    """A request's features do not match the serving signature."""


def _kind(dtype: tf.DType) -> str:
    if dtype.name == "string":
        return "string"
    if dtype.is_bool:
        return "bool"
    if dtype.is_integer:
        return "integer"
    if dtype.is_floating:
        return "float"
    return dtype.name


def _first_bad(name: str, arr: np.ndarray, bad: np.ndarray, what: str) -> RequestError:
    count, index, value = first_bad(arr, bad)
    return RequestError(
        f"Feature {name!r}: {count} value(s) {what}, first {value!r} at index {index}."
    )


def check_numbers(name: str, arr: np.ndarray, dtype: Any = None) -> np.ndarray:
    """Rejects NaN/±Inf, and values `dtype` cannot hold, in a numeric array.

    JSON has no NaN or Infinity (`requests.post(json=...)` refuses them) and
    a cast would silently turn 1e300 into inf (float32) or 1e20 into
    INT64_MIN (int64): each is an error naming the feature.

    Args:
        name: the feature name, for the message.
        arr: a numeric numpy array.
        dtype: the target numpy dtype; `None` keeps `arr.dtype`.

    Returns:
        `arr` cast to `dtype`.

    Example:
    >>> check_numbers("age", np.array([31.0, np.nan]))
    Traceback (most recent call last):
    ...
    mtl_keras.export.requests.RequestError: Feature 'age': 1 value(s) NaN or infinite ...
    """
    target = np.dtype(dtype) if dtype is not None else arr.dtype
    if arr.dtype.kind in "fc":
        bad = nonfinite_mask(arr)
        if bad.any():
            raise _first_bad(name, arr, bad, "NaN or infinite (not valid JSON nor a feature)")
    if target.kind in "iu" and arr.dtype.kind in "iuf" and arr.size:
        info = np.iinfo(target)
        if arr.dtype.kind == "f":
            bad = (arr < float(info.min)) | (arr >= float(info.max) + 1)
        else:
            bad = (arr < info.min) | (arr > info.max)
        if bad.any():
            raise _first_bad(
                name, arr, bad, f"out of the {target.name} range [{info.min}, {info.max}]"
            )
    if target.kind == "f" and arr.size:
        with np.errstate(over="ignore"):
            cast = arr.astype(target)
        bad = nonfinite_mask(cast)
        if bad.any():
            limit = float(np.finfo(target).max)
            raise _first_bad(name, arr, bad, f"overflow {target.name} (|x| > {limit:.4g})")
        return cast
    return arr.astype(target)


def _python_ints(name: str, arr: np.ndarray) -> np.ndarray:
    """An object array of Python ints (too big for int64) -> a clear range error."""
    flat = arr.reshape(-1)
    if flat.size and all(isinstance(v, int) and not isinstance(v, bool) for v in flat):
        big = [v for v in flat if not -(2**63) <= v < 2**63]
        raise RequestError(
            f"Feature {name!r}: {len(big)} value(s) out of the int64 range, first {big[0]!r}."
        )
    return arr


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
    if arr.dtype == object:
        _python_ints(name, arr)
    if arr.dtype == object or arr.dtype.kind in "USO":
        raise RequestError(
            f"Feature {name!r}: expected {spec.dtype.name} ({kind}), got strings/objects "
            f"(numpy dtype {arr.dtype})."
        )
    if kind == "integer" and arr.dtype.kind == "f":
        check_numbers(name, arr)
        if not np.all(arr == np.round(arr)):
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
    if kind in ("float", "integer"):
        return check_numbers(name, arr, spec.dtype.as_numpy_dtype)
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
    mtl_keras.export.requests.RequestError: Missing feature(s) ['x']; ...
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
        if arr.shape[0] == 0:
            raise RequestError(f"Feature {name!r}: empty batch (0 rows); send at least one row.")
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
    if not isinstance(spec, Mapping) or not spec:
        return False
    import tensorflow as tf

    return all(isinstance(v, tf.TensorSpec) for v in spec.values())


def _shape_str(shape: Any) -> str:
    return "(" + ", ".join("batch" if d is None else str(d) for d in shape.as_list()) + ")"
