"""Exporting models for serving (TF Serving SavedModel, models.config, TFLite)."""

from mtl_keras.export.check import ExportCheckError, check_export, inspect_saved_model
from mtl_keras.export.requests import RequestError, validate_request
from mtl_keras.export.saved_model import (
    ConcurrentExportError,
    existing_versions,
    export_saved_model,
    recover_versions,
)
from mtl_keras.export.serving_config import read_models_config, write_models_config
from mtl_keras.export.signature import (
    SavedModelError,
    input_signature,
    saved_model_signatures,
    signature_spec,
)
from mtl_keras.export.tflite import export_tflite, tflite_report
from mtl_keras.export.warmup import read_warmup_requests, write_warmup_requests

__all__ = [
    "ConcurrentExportError",
    "ExportCheckError",
    "RequestError",
    "SavedModelError",
    "check_export",
    "existing_versions",
    "export_saved_model",
    "export_tflite",
    "input_signature",
    "inspect_saved_model",
    "read_models_config",
    "read_warmup_requests",
    "recover_versions",
    "saved_model_signatures",
    "signature_spec",
    "tflite_report",
    "validate_request",
    "write_models_config",
    "write_warmup_requests",
]
