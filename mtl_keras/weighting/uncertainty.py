"""Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018)."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from mtl_keras.tasks import Regression, Task
from mtl_keras.weighting.base import LossWeighting


@keras.saving.register_keras_serializable(package="mtl_keras")
class Uncertainty(LossWeighting):
    """Learns one log-variance `s_t = log(sigma_t^2)` per task.

    Objective (Kendall et al. 2018, eqs. 7 and 10, written with `s_t` for
    numerical stability):

    - regression tasks (Gaussian likelihood):
      `0.5 * exp(-s_t) * L_t + 0.5 * s_t`
    - classification tasks (Binary, Multiclass, Multilabel; scaled softmax /
      sigmoid likelihood): `exp(-s_t) * L_t + 0.5 * s_t`

    The logged weight of task t is the factor in front of `L_t`
    (`0.5 * exp(-s_t)` or `exp(-s_t)`). Static task weights multiply `L_t`
    before this, so they still act as priors. A task with no labelled row in
    the step leaves the objective (its `s_t` gets no gradient). `s_t` starts at `init_log_var`
    (0: weights 0.5 / 1) and is trained by the model's optimizer.

    Args:
        init_log_var: initial value of every `s_t`.

    Example:
    >>> from mtl_keras import weighting
    >>> strategy = weighting.Uncertainty()
    """

    def __init__(self, init_log_var: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.init_log_var = float(init_log_var)

    def build_state(self, tasks: list[Task]) -> None:
        self.log_vars = self.add_weight(
            name="log_vars",
            shape=(len(tasks),),
            initializer=keras.initializers.Constant(self.init_log_var),
            dtype="float32",
        )
        self._factor = [0.5 if isinstance(t, Regression) else 1.0 for t in tasks]

    def combine(
        self, task_losses: Any, training: bool = False, priors: Any = None, labelled: Any = None
    ) -> tuple[Any, Any]:
        log_vars = tf.convert_to_tensor(self.log_vars)
        weights = tf.constant(self._factor, tf.float32) * tf.exp(-log_vars)
        # A task without labelled rows contributes nothing, so its
        # log-variance gets no gradient (the 0.5 * s_t term alone would
        # drive it down and its weight up).
        present = self.labelled_mask(task_losses, labelled)
        terms = weights * self.prior_weights(priors) * task_losses + 0.5 * log_vars
        total = tf.reduce_sum(present * terms)
        return total, weights

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "init_log_var": self.init_log_var}
