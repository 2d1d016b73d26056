"""TFLite / LiteRT export with optional quantization, and an accuracy report.

The model is converted from the same `serving_default` signature as the
SavedModel export (raw inputs -> one output per task), so the `.tflite` file
has a signature runner keyed by feature names returning a dict by task.

String inputs: with TF 2.21 the converter maps `StringLookup` (TabularEncoder)
to TFLite builtin hash-table ops, so such models run on LiteRT (tested). For
ops without a builtin kernel, `select_tf_ops="auto"` (default) retries with
`SELECT_TF_OPS` (Flex delegate); such a model runs with `tf.lite.Interpreter`
(TensorFlow links the Flex delegate) but not with the standalone LiteRT
interpreter, and on device needs the Flex delegate library.
`select_tf_ops=False` raises `TFLiteConversionError` instead.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Callable, Iterable, Mapping

import keras
import numpy as np
import tensorflow as tf

from mtl_keras.export.requests import validate_request
from mtl_keras.export.saved_model import (
    SIGNATURE_NAME,
    check_model,
    input_signature,
    write_saved_model,
)

QUANTIZATIONS = ("float32", "float16", "dynamic_int8", "full_int8")

# Default per-task max |tflite - keras| for sigmoid/softmax-scale outputs,
# used by `tflite_report(..., check=True)`: float32 only reorders float ops;
# float16 stores weights with ~3 significant digits; int8 variants quantize
# weights (and for full_int8 activations) to 256 levels.
DEFAULT_TOLERANCES = {
    "float32": 1e-5,
    "float16": 1e-2,
    "dynamic_int8": 5e-2,
    "full_int8": 1e-1,
}


class TFLiteConversionError(ValueError):
    """The model cannot be converted with the requested options."""


def _representative(
    data: Mapping[str, Any] | Callable[[], Iterable[Mapping[str, Any]]], spec: Mapping
) -> Callable[[], Iterable[dict[str, np.ndarray]]]:
    if callable(data):
        return data
    arrays = validate_request(spec, data)
    n = len(next(iter(arrays.values())))

    def gen() -> Iterable[dict[str, np.ndarray]]:
        # One row per calibration step, keyed by signature input name.
        for i in range(n):
            yield {k: v[i : i + 1] for k, v in arrays.items()}

    return gen


def export_tflite(
    model: keras.Model,
    path: str | os.PathLike[str],
    quantization: str = "float32",
    representative_data: Mapping[str, Any] | Callable[[], Iterable[Any]] | None = None,
    *,
    select_tf_ops: bool | str = "auto",
) -> dict[str, Any]:
    """Converts the model's serving signature to a `.tflite` file.

    Args:
        model: a `MultiTaskModel` or functional model with dict outputs.
        path: the `.tflite` file to write.
        quantization: `"float32"` (no quantization), `"float16"` (fp16
            weights, ~half size), `"dynamic_int8"` (int8 weights, float
            activations, ~quarter size) or `"full_int8"` (int8 weights and
            activations calibrated on `representative_data`; inputs and
            outputs stay float32 so callers feed raw features as usual).
        representative_data: for `"full_int8"`: a few hundred raw rows (dict
            feature -> array) or a callable yielding dicts of 1-row batches.
        select_tf_ops: `"auto"` retries with TF Select ops when builtins
            cannot express the model (string lookups); `True` always allows
            them; `False` never (raises `TFLiteConversionError`).

    Returns:
        `{"path", "size_bytes", "quantization", "select_tf_ops"}`.

    Example:
    >>> import tempfile
    >>> from mtl_keras import Binary, Regression, builders
    >>> model = builders.shared_bottom(
    ...     keras.Input((4,), name="x"), [Binary("click"), Regression("dwell")],
    ...     trunk_units=(8,), tower_units=())
    >>> path = os.path.join(tempfile.mkdtemp(), "model_fp16.tflite")
    >>> info = export_tflite(model, path, quantization="float16")
    >>> info["quantization"], info["size_bytes"] == os.path.getsize(path)
    ('float16', True)
    """
    check_model(model)
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"`quantization` must be one of {QUANTIZATIONS}, got {quantization!r}.")
    if select_tf_ops not in (True, False, "auto"):
        raise ValueError(f"`select_tf_ops` must be True, False or 'auto', got {select_tf_ops!r}.")
    spec = input_signature(model)
    if quantization == "full_int8" and representative_data is None:
        raise ValueError("quantization='full_int8' needs `representative_data` for calibration.")

    with tempfile.TemporaryDirectory() as tmp:
        # From the SavedModel rather than the Keras model: the converter then
        # sees exactly what TF Serving serves, with named signature inputs.
        write_saved_model(model, tmp)

        def convert(with_select: bool) -> bytes:
            converter = tf.lite.TFLiteConverter.from_saved_model(
                tmp, signature_keys=[SIGNATURE_NAME]
            )
            builtins = (
                tf.lite.OpsSet.TFLITE_BUILTINS_INT8
                if quantization == "full_int8"
                else tf.lite.OpsSet.TFLITE_BUILTINS
            )
            ops = [builtins]
            if with_select:
                ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
                # Hash tables (StringLookup) are resources kept in TF ops.
                converter._experimental_lower_tensor_list_ops = False
            converter.target_spec.supported_ops = ops
            if quantization != "float32":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
            if quantization == "float16":
                converter.target_spec.supported_types = [tf.float16]
            if quantization == "full_int8":
                converter.representative_dataset = _representative(representative_data, spec)
            return converter.convert()

        used_select = select_tf_ops is True
        try:
            flatbuffer = convert(used_select)
        except Exception as e:  # the converter raises several error types
            if select_tf_ops != "auto":
                raise TFLiteConversionError(
                    f"TFLite conversion ({quantization}) failed"
                    + ("" if used_select else " with builtin ops only")
                    + f": {_short(e)}. String inputs (StringLookup) need "
                    "select_tf_ops=True (Flex delegate)."
                ) from e
            try:
                flatbuffer = convert(True)
                used_select = True
            except Exception as e2:
                raise TFLiteConversionError(
                    f"TFLite conversion ({quantization}) failed even with SELECT_TF_OPS: "
                    f"{_short(e2)}"
                ) from e2
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(flatbuffer)
    return {
        "path": path,
        "size_bytes": len(flatbuffer),
        "quantization": quantization,
        "select_tf_ops": used_select,
    }


def _short(e: Exception, limit: int = 600) -> str:
    text = str(e).strip().splitlines()
    msg = " ".join(line.strip() for line in text if "error" in line.lower()) or " ".join(text)
    return msg[:limit]


def load_interpreter(path: str | os.PathLike[str], prefer: str = "litert") -> tuple[Any, str]:
    """A TFLite interpreter for `path`: LiteRT if installed, else `tf.lite`.

    Models with TF Select ops only run on `tf.lite.Interpreter` (it links the
    Flex delegate); LiteRT's standalone wheel fails on them, so this falls
    back to `tf.lite` when LiteRT cannot allocate the model.

    Returns:
        `(interpreter, "ai_edge_litert" | "tf.lite")`.

    Example:
    >>> import tempfile
    >>> from mtl_keras import Binary, Regression, builders
    >>> model = builders.shared_bottom(
    ...     keras.Input((4,), name="x"), [Binary("click"), Regression("dwell")],
    ...     trunk_units=(8,), tower_units=())
    >>> path = export_tflite(model, os.path.join(tempfile.mkdtemp(), "m.tflite"))["path"]
    >>> interp, which = load_interpreter(path)
    >>> which in ("ai_edge_litert", "tf.lite")
    True
    """
    path = os.fspath(path)
    if prefer == "litert":
        try:
            from ai_edge_litert.interpreter import Interpreter

            interp = Interpreter(model_path=path)
            interp.allocate_tensors()
            return interp, "ai_edge_litert"
        except (ImportError, RuntimeError, ValueError):
            pass
    interp = tf.lite.Interpreter(model_path=path)
    interp.allocate_tensors()
    return interp, "tf.lite"


def run_tflite(
    path: str | os.PathLike[str], features: Mapping[str, Any], prefer: str = "litert"
) -> tuple[dict[str, np.ndarray], str]:
    """Runs the `serving_default` signature of a `.tflite` file on raw features.

    Returns:
        `(outputs by task, interpreter name)`.
    """
    interp, which = load_interpreter(path, prefer)
    runner = interp.get_signature_runner(SIGNATURE_NAME)
    details = runner.get_input_details()
    feed = {}
    for name, arr in features.items():
        arr = np.asarray(arr)
        if arr.dtype == object:
            arr = arr.astype(bytes)
        feed[name] = arr.astype(details[name]["dtype"]) if arr.dtype.kind != "S" else arr
    outputs = runner(**feed)
    return {k: np.asarray(v) for k, v in outputs.items()}, which


def tflite_report(
    model: keras.Model,
    path: str | os.PathLike[str],
    examples: Mapping[str, Any],
    *,
    tolerance: float | None = None,
    quantization: str | None = None,
    prefer: str = "litert",
) -> dict[str, Any]:
    """Size and per-task max deviation of a `.tflite` file vs the Keras model.

    Args:
        model: the Keras model the file was converted from.
        path: the `.tflite` file.
        examples: raw rows, dict feature -> array with a batch dimension.
        tolerance: if given (or `quantization` is, for its default from
            `DEFAULT_TOLERANCES`), raise `AssertionError` when a task's max
            deviation exceeds it.
        quantization: the variant, to pick a default tolerance.
        prefer: `"litert"` (fallback `tf.lite`) or `"tf.lite"`.

    Returns:
        `{"size_bytes", "interpreter", "max_abs_diff": {task: float},
        "tolerance"}`.

    Example:
    >>> import tempfile
    >>> from mtl_keras import Binary, Regression, builders
    >>> model = builders.shared_bottom(
    ...     keras.Input((4,), name="x"), [Binary("click"), Regression("dwell")],
    ...     trunk_units=(8,), tower_units=())
    >>> path = export_tflite(model, os.path.join(tempfile.mkdtemp(), "m.tflite"))["path"]
    >>> report = tflite_report(model, path, {"x": np.random.rand(4, 4).astype("float32")})
    >>> sorted(report["max_abs_diff"]), max(report["max_abs_diff"].values()) < 1e-4
    (['click', 'dwell'], True)
    """
    features = validate_request(input_signature(model), examples)
    expected = model.predict(_predict_inputs(features), verbose=0)
    got, which = run_tflite(path, features, prefer)
    diffs = {}
    for task, ref in expected.items():
        value = got[task].reshape(np.shape(ref))
        diffs[task] = float(np.max(np.abs(value - np.asarray(ref)), initial=0.0))
    if tolerance is None and quantization is not None:
        tolerance = DEFAULT_TOLERANCES[quantization]
    if tolerance is not None:
        bad = {t: d for t, d in diffs.items() if d > tolerance}
        if bad:
            raise AssertionError(f"TFLite deviation above {tolerance}: {bad}")
    return {
        "size_bytes": os.path.getsize(path),
        "interpreter": which,
        "max_abs_diff": diffs,
        "tolerance": tolerance,
    }


def _predict_inputs(features: Mapping[str, np.ndarray]) -> dict[str, Any]:
    # Keras cannot convert object arrays of bytes; a tf.string tensor it can.
    return {k: tf.constant(v) if v.dtype == object else v for k, v in features.items()}
