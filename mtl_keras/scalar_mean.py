"""A lean running mean for per-step scalars (task losses and weights)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mtl_keras")
class ScalarMean(keras.metrics.Metric):
    """Weighted running mean of one scalar per step.

    `keras.metrics.Mean` handles arbitrary shapes and sample weights, which
    costs a dozen ops per update; the train step logs 2 scalars per task every
    step, so this keeps it to two `assign_add`s.

    Args:
        name: the logged name, e.g. `income_loss`.

    Example:
    >>> m = ScalarMean(name="x")
    >>> m.update_state(2.0); m.update_state(4.0)
    >>> float(m.result())
    3.0
    """

    def __init__(self, name: str = "mean", dtype: Any = "float32") -> None:
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, value: Any, sample_weight: Any = None) -> None:
        value = ops.cast(value, self.dtype)
        if sample_weight is None:
            self.total.assign_add(value)
            self.count.assign_add(ops.cast(1.0, self.dtype))
        else:
            weight = ops.cast(sample_weight, self.dtype)
            self.total.assign_add(value * weight)
            self.count.assign_add(weight)

    def result(self) -> Any:
        return ops.divide_no_nan(self.total, self.count)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype}
