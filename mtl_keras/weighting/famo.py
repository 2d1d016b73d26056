"""FAMO: Fast Adaptive Multitask Optimization (Liu et al., NeurIPS 2023)."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from mtl_keras.tasks import Task
from mtl_keras.weighting.base import LossWeighting


@keras.saving.register_keras_serializable(package="mtl_keras")
class FAMO(LossWeighting):
    """Balances the tasks' log-loss decrease with O(1) cost per step.

    Liu, Feng, Stone & Liu, "FAMO: Fast Adaptive Multitask Optimization",
    NeurIPS 2023 (Algorithm 1). Task logits `xi` give `z = softmax(xi)`.
    With `D_i = max(L_i - min_loss, epsilon)` the network follows

        d = sum_i (z_i / (c * D_i)) * grad L_i,   c = sum_i z_i / D_i

    i.e. the gradient of `sum_i z_i * log(D_i) / c` with `z` and `c` held
    constant. The logged weights `z_i / (c * D_i)` sum to 1 (the paper's
    normalisation). The logits follow the change of log losses:

        delta_i = log D_i(prev step) - log D_i(this step)
        g       = J_softmax(xi)^T delta + weight_decay * xi
        xi     <- Adam(g, learning_rate)   (or plain SGD with update="sgd")

    As in the paper's default code (Adam, lr 0.025, weight decay 1e-3 as an
    L2 term). No extra forward or backward pass: each training step first
    updates `xi` from the previous step's stored losses and this step's
    losses (a different batch, which the paper's "no extra pass" variant
    tolerates), then weights this step with the new `z`. Tasks without a
    labelled row in either step are left out of `delta` and of the step's
    weights (their logits only decay). Static task weights (spec `weight`,
    `loss_weights`) do not apply: scaling a loss does not change its
    log-decrease, so `compile` refuses them.

    State (logits, Adam moments, stored log losses) lives in non-trainable
    Keras variables, so it is checkpointed and saved with the model.

    Args:
        learning_rate: step size of the logit update (paper: 0.025).
        weight_decay: L2 coefficient on the logits (paper: 1e-3).
        update: "adam" (paper's code) or "sgd" (paper's Algorithm 1).
        min_loss: lower bound `b_i` subtracted from each loss (paper: 0).
        epsilon: floor of `L_i - min_loss` inside the log.
        beta_1: Adam's first-moment decay.
        beta_2: Adam's second-moment decay.
        adam_epsilon: Adam's denominator epsilon.

    Example:
    >>> from mtl_keras import weighting
    >>> strategy = weighting.FAMO(learning_rate=0.025)
    """

    applies_priors = False

    def __init__(
        self,
        learning_rate: float = 0.025,
        weight_decay: float = 1e-3,
        update: str = "adam",
        min_loss: float = 0.0,
        epsilon: float = 1e-8,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        adam_epsilon: float = 1e-8,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if update not in ("adam", "sgd"):
            raise ValueError(f"FAMO: `update` must be 'adam' or 'sgd', got {update!r}.")
        if epsilon <= 0:
            raise ValueError(f"FAMO: `epsilon` must be > 0, got {epsilon!r}.")
        self.learning_rate = float(learning_rate)
        self.weight_decay = float(weight_decay)
        self.update = update
        self.min_loss = float(min_loss)
        self.epsilon = float(epsilon)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.adam_epsilon = float(adam_epsilon)

    def build_state(self, tasks: list[Task]) -> None:
        k = len(tasks)
        self.logits = self.add_state("logits", (k,))
        self.prev_log_losses = self.add_state("prev_log_losses", (k,))
        self.prev_labelled = self.add_state("prev_labelled", (k,))  # 1 where prev loss was valid
        self.adam_m = self.add_state("adam_m", (k,))
        self.adam_v = self.add_state("adam_v", (k,))
        self.logit_steps = self.add_state("logit_steps", ())

    def _log_losses(self, losses: Any) -> Any:
        return tf.math.log(tf.maximum(losses - self.min_loss, self.epsilon))

    def logit_gradient(self, prev_log_losses: Any, log_losses: Any, mask: Any) -> Any:
        """`J_softmax(xi)^T delta + weight_decay * xi` for the current logits."""
        xi = tf.convert_to_tensor(self.logits)
        z = tf.nn.softmax(xi)
        delta = (prev_log_losses - log_losses) * mask
        return z * (delta - tf.reduce_sum(z * delta)) + self.weight_decay * xi

    def _update_logits(self, log_losses: Any, labelled: Any) -> None:
        mask = self.prev_labelled * labelled
        has_prev = tf.reduce_any(mask > 0)
        g = self.logit_gradient(tf.convert_to_tensor(self.prev_log_losses), log_losses, mask)
        xi = tf.convert_to_tensor(self.logits)
        if self.update == "sgd":
            new_xi = xi - self.learning_rate * g
        else:
            t = self.logit_steps + 1.0
            m = self.beta_1 * self.adam_m + (1.0 - self.beta_1) * g
            v = self.beta_2 * self.adam_v + (1.0 - self.beta_2) * tf.square(g)
            m_hat = m / (1.0 - tf.pow(self.beta_1, t))
            v_hat = v / (1.0 - tf.pow(self.beta_2, t))
            new_xi = xi - self.learning_rate * m_hat / (tf.sqrt(v_hat) + self.adam_epsilon)
            self.adam_m.assign(tf.where(has_prev, m, self.adam_m))
            self.adam_v.assign(tf.where(has_prev, v, self.adam_v))
        self.logit_steps.assign_add(tf.cast(has_prev, tf.float32))
        self.logits.assign(tf.where(has_prev, new_xi, xi))
        self.prev_log_losses.assign(log_losses)
        self.prev_labelled.assign(labelled)

    def combine(
        self, task_losses: Any, training: bool = False, priors: Any = None, labelled: Any = None
    ) -> tuple[Any, Any]:
        losses = tf.cast(task_losses, tf.float32)
        labelled = self.labelled_mask(losses, labelled)
        if training:
            self._update_logits(tf.stop_gradient(self._log_losses(losses)), labelled)
        z = tf.nn.softmax(tf.convert_to_tensor(self.logits))
        d = tf.maximum(losses - self.min_loss, self.epsilon)
        scaled = tf.stop_gradient(labelled * z / d)
        c = tf.reduce_sum(scaled)
        weights = tf.math.divide_no_nan(scaled, c)
        # Gradient: sum_i weights_i * grad L_i (log(D)' = 1/D cancels D in weights).
        total = tf.math.divide_no_nan(
            tf.reduce_sum(tf.stop_gradient(labelled * z) * tf.math.log(d)), c
        )
        return total, weights

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "learning_rate": self.learning_rate,
            "weight_decay": self.weight_decay,
            "update": self.update,
            "min_loss": self.min_loss,
            "epsilon": self.epsilon,
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "adam_epsilon": self.adam_epsilon,
        }
