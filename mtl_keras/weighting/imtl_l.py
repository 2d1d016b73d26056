"""IMTL-L: the loss-balance part of Impartial Multi-Task Learning (Liu et al., ICLR 2021)."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from mtl_keras.tasks import Task
from mtl_keras.weighting.base import LossWeighting


@keras.saving.register_keras_serializable(package="mtl_keras")
class IMTLL(LossWeighting):
    """Learns one log-scale `s_t` per task so that scaled losses stay equal.

    Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang, "Towards Impartial
    Multi-task Learning", ICLR 2021, Sec. 3.2 (IMTL-L). Objective:

        total = sum_t (exp(s_t) * p_t * L_t - s_t)

    `s_t` is trained by the model's optimizer together with the network; its
    gradient `exp(s_t) * p_t * L_t - 1` vanishes when the scaled loss
    `exp(s_t) * p_t * L_t` equals 1, which balances the tasks' loss scales.
    The network's gradient is that of `sum_t exp(s_t) * p_t * L_t`.
    `p_t` is the task spec's static weight (1 by default); the logged weight
    is `exp(s_t) * p_t`.

    Args:
        init_log_scale: initial value of every `s_t` (0: weights 1).

    Example:
    >>> from mtl_keras import weighting
    >>> strategy = weighting.IMTLL()
    """

    def __init__(self, init_log_scale: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.init_log_scale = float(init_log_scale)

    def build_state(self, tasks: list[Task]) -> None:
        self.log_scales = self.add_weight(
            name="log_scales",
            shape=(len(tasks),),
            initializer=keras.initializers.Constant(self.init_log_scale),
            dtype="float32",
        )

    def combine(
        self, task_losses: Any, training: bool = False, priors: Any = None, labelled: Any = None
    ) -> tuple[Any, Any]:
        s = tf.convert_to_tensor(self.log_scales)
        weights = tf.exp(s) * self.prior_weights(priors)
        # No labelled row: no term, so the task's scale stays where it is.
        present = self.labelled_mask(task_losses, labelled)
        total = tf.reduce_sum(present * (weights * task_losses - s))
        return total, weights

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "init_log_scale": self.init_log_scale}
