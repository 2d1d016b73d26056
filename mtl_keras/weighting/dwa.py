"""Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019)."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from mtl_keras.tasks import Task
from mtl_keras.weighting.base import LossWeighting


@keras.saving.register_keras_serializable(package="mtl_keras")
class DWA(LossWeighting):
    """Dynamic Weight Average: weights follow the tasks' rate of descent.

    Liu, Johns & Davison, "End-to-End Multi-Task Learning with Attention",
    CVPR 2019, eq. 1. With `L_k(t)` the average training loss of task k over
    epoch t and K tasks:

        r_k(t-1) = L_k(t-1) / L_k(t-2)
        w_k(t)   = K * softmax_k(r_k(t-1) / T)

    so a task whose loss fell less in the last epoch gets more weight; the
    weights sum to K. The first two epochs use `w_k = 1`.
    `total = sum_k w_k * p_k * L_k` where `p_k` is the task spec's static
    weight (1 by default); the logged weight is `w_k * p_k`.

    Epoch boundaries: the strategy sums each task's loss over the training
    steps (in Keras variables) and `MultiTaskModel.fit` closes the epoch
    through `on_epoch_end` (a callback the model runs before the user's, so
    `BackupAndRestore` and checkpoints save the closed epoch). All of the
    history is Keras state: saved in `.keras` files and checkpoints, so a
    resumed run continues it. Batches without labels for a task do not count
    for it; an epoch without any leaves that task's history (and its ratio)
    where it was, and a task with no history yet gets weight 1 while the
    others share the rest. With `train_on_batch` or a custom loop, pass
    `steps_per_epoch` (an epoch then closes every that many training steps,
    counted inside the step, so it also works with `steps_per_execution`)
    or call `end_epoch()` yourself.

    Args:
        temperature: softmax temperature `T` (paper: 2). Larger is smoother.
        steps_per_epoch: optional; if set, an epoch ends every
            `steps_per_epoch` training steps instead of at metric resets.

    Example:
    >>> from mtl_keras import weighting
    >>> strategy = weighting.DWA(temperature=2.0)
    """

    def __init__(
        self, temperature: float = 2.0, steps_per_epoch: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ValueError(f"DWA: `temperature` must be > 0, got {temperature!r}.")
        if steps_per_epoch is not None and int(steps_per_epoch) < 1:
            raise ValueError(f"DWA: `steps_per_epoch` must be >= 1, got {steps_per_epoch!r}.")
        self.temperature = float(temperature)
        self.steps_per_epoch = None if steps_per_epoch is None else int(steps_per_epoch)

    def build_state(self, tasks: list[Task]) -> None:
        k = len(tasks)
        self.loss_sums = self.add_state("loss_sums", (k,))
        self.loss_counts = self.add_state("loss_counts", (k,))
        self.prev_losses = self.add_state("prev_losses", (k,))  # L(t-1)
        self.prev2_losses = self.add_state("prev2_losses", (k,))  # L(t-2)
        self.epochs_seen = self.add_state("epochs_seen", ())
        self.steps_in_epoch = self.add_state("steps_in_epoch", ())

    def dwa_weights(self) -> Any:
        """The current `w_k` (without static priors), from stored epoch losses."""
        prev = tf.convert_to_tensor(self.prev_losses)
        prev2 = tf.convert_to_tensor(self.prev2_losses)
        # Tasks with two epochs of history share their number of weights
        # by softmax; a task without (never labelled) keeps weight 1 rather
        # than the largest weight its missing ratio would give it.
        known = prev2 > 0
        ratio = tf.where(known, tf.math.divide_no_nan(prev, prev2), tf.ones_like(prev))
        logits = tf.where(known, ratio / self.temperature, tf.fill(tf.shape(prev), -1e9))
        k = tf.reduce_sum(tf.cast(known, tf.float32))
        dynamic = tf.where(known, k * tf.nn.softmax(logits), tf.ones_like(prev))
        ready = tf.convert_to_tensor(self.epochs_seen) >= 2.0
        return tf.where(ready, dynamic, tf.ones_like(dynamic))

    def _close_epoch(self, close: Any) -> None:
        """Shifts L(t-1) -> L(t-2) and this epoch's averages -> L(t-1) where
        `close` is true and some loss was accumulated; graph friendly."""
        sums = tf.convert_to_tensor(self.loss_sums)
        counts = tf.convert_to_tensor(self.loss_counts)
        close = tf.logical_and(close, tf.reduce_any(counts > 0))
        prev = tf.convert_to_tensor(self.prev_losses)
        seen = counts > 0
        # A task without labelled rows this epoch keeps its history.
        shift = tf.logical_and(close, seen)
        mean = tf.math.divide_no_nan(sums, counts)
        self.prev2_losses.assign(tf.where(shift, prev, self.prev2_losses))
        self.prev_losses.assign(tf.where(shift, mean, prev))
        self.epochs_seen.assign(self.epochs_seen + tf.cast(close, tf.float32))
        zeros = tf.zeros_like(sums)
        self.loss_sums.assign(tf.where(close, zeros, sums))
        self.loss_counts.assign(tf.where(close, zeros, counts))
        self.steps_in_epoch.assign(tf.where(close, 0.0, self.steps_in_epoch))

    def end_epoch(self) -> None:
        """Closes the current epoch (no-op if no training step ran in it)."""
        if self.built:
            self._close_epoch(tf.constant(True))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.steps_per_epoch is None:
            self.end_epoch()

    def combine(
        self, task_losses: Any, training: bool = False, priors: Any = None, labelled: Any = None
    ) -> tuple[Any, Any]:
        weights = self.dwa_weights() * self.prior_weights(priors)
        total = tf.reduce_sum(weights * task_losses)
        if training:
            losses = tf.stop_gradient(tf.cast(task_losses, tf.float32))
            present = self.labelled_mask(losses, labelled)
            self.loss_sums.assign_add(losses * present)
            self.loss_counts.assign_add(present)
            if self.steps_per_epoch is not None:
                self.steps_in_epoch.assign_add(1.0)
                self._close_epoch(self.steps_in_epoch >= float(self.steps_per_epoch))
        return total, weights

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "temperature": self.temperature,
            "steps_per_epoch": self.steps_per_epoch,
        }
