"""Gradual sparsity schedules for magnitude pruning."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable("mtl_keras")
class PolynomialDecay:
    """Sparsity that rises from `initial_sparsity` to a final value.

    The classic gradual schedule of Zhu & Gupta (2017):
    `s(t) = final + (initial - final) * (1 - p) ** power`, with
    `p = (t - begin_step) / (end_step - begin_step)` clipped to [0, 1]. Masks
    are recomputed every `frequency` steps between `begin_step` and
    `end_step` (and at `end_step`); in between they stay fixed and are only
    re-applied.

    Args:
        final_sparsity: fraction of weights zeroed at `end_step` for a
            variable that uses the default target (per-variable targets, e.g.
            shared vs task-specific, override it; see `pruning_optimizer`).
        begin_step: optimizer step of the first mask update.
        end_step: optimizer step at which the final sparsity is reached.
        frequency: steps between two mask updates.
        initial_sparsity: sparsity at `begin_step`.
        power: exponent of the decay (3 prunes fast early, slowly late).

    Example:
    >>> s = PolynomialDecay(0.8, begin_step=0, end_step=100, frequency=10)
    >>> round(float(s.sparsity(100)), 2)
    0.8
    """

    def __init__(
        self,
        final_sparsity: float = 0.8,
        begin_step: int = 0,
        end_step: int = 1000,
        frequency: int = 100,
        initial_sparsity: float = 0.0,
        power: float = 3.0,
    ) -> None:
        for name, value in (
            ("final_sparsity", final_sparsity),
            ("initial_sparsity", initial_sparsity),
        ):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"PolynomialDecay `{name}` must be in [0, 1), got {value}.")
        if begin_step < 0 or end_step <= begin_step:
            raise ValueError(
                f"PolynomialDecay needs 0 <= begin_step < end_step, got {begin_step}, {end_step}."
            )
        if frequency < 1:
            raise ValueError(f"PolynomialDecay `frequency` must be >= 1, got {frequency}.")
        self.final_sparsity = float(final_sparsity)
        self.begin_step = int(begin_step)
        self.end_step = int(end_step)
        self.frequency = int(frequency)
        self.initial_sparsity = float(initial_sparsity)
        self.power = float(power)

    def progress(self, step: Any) -> Any:
        """1 - (1 - p) ** power: 0 at `begin_step`, 1 from `end_step` on."""
        step = tf.cast(step, tf.float32)
        p = (step - self.begin_step) / float(self.end_step - self.begin_step)
        p = tf.clip_by_value(p, 0.0, 1.0)
        return 1.0 - tf.pow(1.0 - p, self.power)

    def sparsity(self, step: Any, final: Any = None) -> Any:
        """Target sparsity at `step`, towards `final` (default `final_sparsity`)."""
        final = self.final_sparsity if final is None else final
        return self.initial_sparsity + (final - self.initial_sparsity) * self.progress(step)

    def should_update(self, step: Any) -> Any:
        """True on the steps where masks are recomputed."""
        step = tf.cast(step, tf.int64)
        in_range = (step >= self.begin_step) & (step <= self.end_step)
        on_beat = tf.equal((step - self.begin_step) % self.frequency, 0)
        return in_range & (on_beat | tf.equal(step, self.end_step))

    def get_config(self) -> dict[str, Any]:
        return {
            "final_sparsity": self.final_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "frequency": self.frequency,
            "initial_sparsity": self.initial_sparsity,
            "power": self.power,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> PolynomialDecay:
        return cls(**config)
