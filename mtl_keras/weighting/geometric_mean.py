"""Geometric loss strategy (Chennupati et al., CVPR Workshops 2019)."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from mtl_keras.weighting.base import LossWeighting


@keras.saving.register_keras_serializable(package="mtl_keras")
class GeometricMean(LossWeighting):
    """Minimises the geometric mean of the task losses.

    Chennupati, Sistu, Yogamani & Rawashdeh, "MultiNet++: Multi-Stream
    Feature Aggregation and Geometric Loss Strategy for Multi-Task Learning",
    CVPR Workshops 2019 (GLS):

        total = (prod_t L_t) ^ (1/T) = exp(mean_t log L_t)

    Its gradient is `sum_t w_t * dL_t` with `w_t = total / (T * L_t)`, so a
    task with a smaller loss gets a larger weight and the result does not
    depend on each loss's scale. Those `w_t` are the logged weights. The
    objective is stateless.

    Tasks without a labelled row in the batch are left out of the product
    and T counts the others; losses are floored at `min_loss` before the
    log. Static task weights (spec `weight`, `loss_weights`) do not apply:
    scaling a loss only scales the objective, so `compile` refuses them.

    Args:
        min_loss: floor of each loss inside the log.

    Example:
    >>> from mtl_keras import weighting
    >>> strategy = weighting.GeometricMean()
    """

    applies_priors = False

    def __init__(self, min_loss: float = 1e-8, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if min_loss <= 0:
            raise ValueError(f"GeometricMean: `min_loss` must be > 0, got {min_loss!r}.")
        self.min_loss = float(min_loss)

    def combine(
        self, task_losses: Any, training: bool = False, priors: Any = None, labelled: Any = None
    ) -> tuple[Any, Any]:
        losses = tf.cast(task_losses, tf.float32)
        present = self.labelled_mask(losses, labelled)
        count = tf.reduce_sum(present)
        logs = tf.math.log(tf.maximum(losses, self.min_loss)) * present
        total = tf.exp(tf.math.divide_no_nan(tf.reduce_sum(logs), count))
        # d total / d L_t, for logging and for `test_step`'s weighted sum.
        weights = tf.stop_gradient(
            present * tf.math.divide_no_nan(total, count * tf.maximum(losses, self.min_loss))
        )
        return total, weights

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "min_loss": self.min_loss}
