"""Architectures: each is a function returning a `MultiTaskModel`."""

from mtl_keras.builders.shared_bottom import shared_bottom

__all__ = ["shared_bottom"]
