"""TF Serving warm-up requests (`assets.extra/tf_serving_warmup_requests`).

TF Serving replays these `PredictionLog` records when it loads a version,
before reporting it AVAILABLE, so lazily initialized kernels and lookup tables
are ready before the first real request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow as tf

from mtl_keras.export.requests import validate_request
from mtl_keras.export.signature import SignatureSpec

WARMUP_FILE = "tf_serving_warmup_requests"


def warmup_records(
    examples: Mapping[str, Any],
    spec: SignatureSpec,
    signature_names: Sequence[str] = ("serving_default",),
    model_name: str = "model",
) -> list[Any]:
    """One `PredictionLog` per signature, carrying all example rows.

    Args:
        examples: dict feature -> array with a batch dimension (a few rows).
        spec: the signature inputs (name -> `tf.TensorSpec`).
        signature_names: the signatures to warm up.
        model_name: `model_spec.name`; TF Serving ignores it for warm-up.

    Example:
    >>> spec = {"x": tf.TensorSpec((None, 2), tf.float32)}
    >>> [r.predict_log.request.model_spec.signature_name
    ...  for r in warmup_records({"x": [[0.0, 1.0]]}, spec)]
    ['serving_default']
    """
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    arrays = validate_request(spec, examples)
    records = []
    for sig in signature_names:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = sig
        for name, arr in arrays.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(arr, dtype=spec[name].dtype))
        records.append(
            prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
        )
    return records


def write_warmup_requests(
    export_dir: str,
    examples: Mapping[str, Any],
    spec: SignatureSpec,
    signature_names: Sequence[str] = ("serving_default",),
) -> str:
    """Writes `export_dir/assets.extra/tf_serving_warmup_requests`; returns its path.

    Args:
        export_dir: a SavedModel (version) directory.
        examples: a few raw rows, dict feature -> array with a batch dimension.
        spec: the signature inputs (name -> `tf.TensorSpec`).
        signature_names: signatures to warm up (one record each).

    Example:
    >>> import tempfile
    >>> spec = {"x": tf.TensorSpec((None, 2), tf.float32)}
    >>> os.path.basename(write_warmup_requests(tempfile.mkdtemp(), {"x": [[0., 1.]]}, spec))
    'tf_serving_warmup_requests'
    """
    records = warmup_records(examples, spec, signature_names)
    extra = os.path.join(export_dir, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    path = os.path.join(extra, WARMUP_FILE)
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record.SerializeToString())
    return path


def read_warmup_requests(path: str) -> list[Any]:
    """Parses a warm-up file (or an export directory's) into `PredictionLog`s.

    Args:
        path: the warm-up file, or a version directory containing it.

    Example:
    >>> import tempfile
    >>> spec = {"x": tf.TensorSpec((None, 2), tf.float32)}
    >>> export_dir = tempfile.mkdtemp()
    >>> _ = write_warmup_requests(export_dir, {"x": [[0.0, 1.0]]}, spec)
    >>> logs = read_warmup_requests(export_dir)
    >>> len(logs), logs[0].predict_log.request.model_spec.signature_name
    (1, 'serving_default')
    """
    from tensorflow_serving.apis import prediction_log_pb2

    if os.path.isdir(path):
        path = os.path.join(path, "assets.extra", WARMUP_FILE)
    logs = []
    for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(raw)
        logs.append(log)
    return logs
