"""Keeps a frozen composite layer's sublayers frozen after deserialisation."""

from __future__ import annotations

import keras


def keep_frozen(layer: keras.layers.Layer) -> None:
    """Re-applies `trainable=False` to `layer`'s sublayers and variables.

    `from_config` passes `trainable=False` to `Layer.__init__`, which only
    records it: sublayers created afterwards (in `__init__` or `build`) stay
    trainable, so after a `.keras` reload a frozen `MLP` trained again while
    saying `trainable=False`. Call at the end of `build` of every layer that
    owns sublayers.

    Args:
        layer: the composite layer.

    Example:
    >>> class Block(keras.layers.Layer):
    ...     def build(self, input_shape):
    ...         self.inner = keras.layers.Dense(2)  # created after __init__
    ...         self.inner.build(input_shape)
    ...         keep_frozen(self)
    >>> block = Block(trainable=False)
    >>> block.build((None, 3))
    >>> block.inner.trainable, len(block.trainable_weights)
    (False, 0)
    """
    if not layer.trainable:
        # The setter recurses into sublayers and variables, but assigning
        # the value the layer already has is a no-op: flip through True.
        layer.trainable = True
        layer.trainable = False
