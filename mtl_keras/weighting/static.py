"""Static loss weights: total = sum_t w_t * L_t."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from mtl_keras.tasks import Task
from mtl_keras.weighting.base import LossWeighting


@keras.saving.register_keras_serializable(package="mtl_keras")
class Static(LossWeighting):
    """Fixed per-task weights: `total = sum_t w_t * L_t`.

    This is what `keras.Model.compile(loss_weights=...)` does, except that each
    `L_t` is the mean over the rows labelled for task t.

    Args:
        weights: optional dict task name -> weight. Tasks not listed use their
            spec's `weight` (1.0 by default).

    Example:
    >>> from mtl_keras import weighting
    >>> strategy = weighting.Static({"income": 2.0})
    """

    def __init__(self, weights: dict[str, float] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if weights is not None and not isinstance(weights, dict):
            raise ValueError(
                f"Static: `weights` must be a dict task name -> weight, got {weights!r}."
            )
        self.weights_by_task = dict(weights or {})

    def build_state(self, tasks: list[Task]) -> None:
        unknown = set(self.weights_by_task) - {t.name for t in tasks}
        if unknown:
            raise ValueError(
                f"Static: weights given for unknown tasks {sorted(unknown)}; "
                f"tasks are {[t.name for t in tasks]}."
            )
        for name, w in self.weights_by_task.items():
            if not isinstance(w, (int, float)) or w < 0:
                raise ValueError(f"Static: weight of task {name!r} must be >= 0, got {w!r}.")
        # NaN: the task's static weight (the step's prior) applies.
        self._overrides = [float(self.weights_by_task.get(t.name, "nan")) for t in tasks]

    def combine(
        self, task_losses: Any, training: bool = False, priors: Any = None, labelled: Any = None
    ) -> tuple[Any, Any]:
        overrides = tf.constant(self._overrides, tf.float32)
        weights = tf.where(tf.math.is_nan(overrides), self.prior_weights(priors), overrides)
        return tf.reduce_sum(weights * task_losses), weights

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "weights": self.weights_by_task or None}
