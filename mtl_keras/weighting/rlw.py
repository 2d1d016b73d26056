"""Random Loss Weighting (Lin et al., TMLR 2022; arXiv 2111.10603, 2021)."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from mtl_keras.weighting.base import LossWeighting


@keras.saving.register_keras_serializable(package="mtl_keras")
class RLW(LossWeighting):
    """Random Loss Weighting: fresh random task weights at every step.

    Lin et al., "Reasonable Effectiveness of Random Weighting:
    A Litmus Test for Multi-Task Learning" (TMLR 2022; arXiv 2111.10603).
    Each training step draws `lambda_k ~ N(0, 1)` and uses

        w = total_weight * softmax(lambda)

    so the weights are positive and sum to `total_weight`. The paper's
    weights sum to 1 (`total_weight=1.0`); the default `total_weight=None`
    means K (number of tasks), the same scale as static unit weights and
    DWA, so switching strategy does not rescale the learning rate.
    `total = sum_k w_k * p_k * L_k` where `p_k` is the task spec's static
    weight; the logged weight is `w_k * p_k`. Evaluation (`training=False`)
    uses the expected, uniform weights `total_weight / K`.

    Randomness comes from a `keras.random.SeedGenerator`, so a seeded
    strategy is reproducible and its generator state is saved with the model.

    Args:
        total_weight: sum of the weights; None means K.
        seed: optional int seed of the generator.

    Example:
    >>> from mtl_keras import weighting
    >>> strategy = weighting.RLW(seed=42)
    """

    def __init__(
        self, total_weight: float | None = None, seed: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if total_weight is not None and total_weight <= 0:
            raise ValueError(f"RLW: `total_weight` must be > 0, got {total_weight!r}.")
        self.total_weight = None if total_weight is None else float(total_weight)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="rlw_seed")

    def _scale(self) -> float:
        return float(self.num_tasks) if self.total_weight is None else self.total_weight

    def sample_weights(self) -> Any:
        """Draws one weight vector (advances the generator)."""
        logits = keras.random.normal((self.num_tasks,), seed=self.seed_generator)
        return self._scale() * tf.nn.softmax(tf.cast(logits, tf.float32))

    def combine(
        self, task_losses: Any, training: bool = False, priors: Any = None, labelled: Any = None
    ) -> tuple[Any, Any]:
        if training:
            weights = self.sample_weights()
        else:
            weights = tf.fill([self.num_tasks], self._scale() / self.num_tasks)
        weights = weights * self.prior_weights(priors)
        return tf.reduce_sum(weights * task_losses), weights

    # `Layer.save_own_variables` skips seed generators; save the generator's
    # state too so that a reloaded model continues the same random sequence.
    _SEED_KEY = "seed_generator_state"

    def save_own_variables(self, store: Any) -> None:
        super().save_own_variables(store)
        store[self._SEED_KEY] = self.seed_generator.state

    def load_own_variables(self, store: Any) -> None:
        keys = list(store.keys())
        super().load_own_variables({k: store[k] for k in keys if k != self._SEED_KEY})
        if self._SEED_KEY in keys:  # absent in files written before it was saved
            self.seed_generator.state.assign(store[self._SEED_KEY])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "total_weight": self.total_weight, "seed": self.seed}
