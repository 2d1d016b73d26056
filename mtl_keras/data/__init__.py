"""Input pipelines."""

from mtl_keras.data.pipeline import from_arrays

__all__ = ["from_arrays"]
