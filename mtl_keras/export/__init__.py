"""Exporting models for serving."""

from mtl_keras.export.saved_model import existing_versions, export_saved_model

__all__ = ["existing_versions", "export_saved_model"]
