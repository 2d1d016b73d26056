"""GradVac (Wang et al., ICLR 2021): gradient vaccine with EMA similarity targets."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from mtl_keras.tasks import Task
from mtl_keras.weighting import _ops
from mtl_keras.weighting.base import GradientAggregator


@keras.saving.register_keras_serializable(package="mtl_keras")
class GradVac(GradientAggregator):
    """Gradient Vaccine.

    For each task i, starting from `g_i^PC = g_i`, visit the other tasks j
    (random order): with `phi = cos(g_i^PC, g_j)` and the EMA target
    `phi_hat_ij`, if `phi < phi_hat_ij` add
    `w g_j`, `w = ||g_i^PC|| (phi_hat sqrt(1 - phi^2) - phi sqrt(1 - phi_hat^2))
    / (||g_j|| sqrt(1 - phi_hat^2) + eps)`, which raises the cosine to the
    target; then update `phi_hat_ij <- (1 - beta) phi_hat_ij + beta phi`.
    The direction is the sum `d = sum_i g_i^PC` (torchjd's convention).
    Targets start at 0, so the first step is PCGrad-like (only negative
    cosines are corrected). Cosines use `||a|| ||b|| + eps` denominators.

    State: the `(m, m)` targets `phi_hat`, a non-trainable variable (saved
    with the model; updated once per training step), and the order RNG.

    Properties: non-conflicting rows (with zero targets) give their sum;
    with two tasks the order does not matter.

    Reference: Wang et al., "Gradient Vaccine: Investigating and Improving
    Multi-task Optimization in Massively Multilingual Models", ICLR 2021
    (arXiv:2010.05874).

    Args:
        beta: EMA rate of the targets (torchjd: 0.5).
        eps: added to the denominators (torchjd: 1e-8).
        random_order: visit other tasks in a fresh random order every step
            (torchjd); False uses task order.
        seed: optional seed of the visiting order.

    Example:
    >>> from mtl_keras import weighting
    >>> strategy = weighting.GradVac(beta=0.01)
    """

    gramian_dtype = tf.float32

    def __init__(
        self,
        beta: float = 0.5,
        eps: float = 1e-8,
        random_order: bool = True,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= beta <= 1.0 or eps < 0:
            raise ValueError("GradVac: `beta` must be in [0, 1] and `eps` >= 0.")
        self.beta = float(beta)
        self.eps = float(eps)
        self.random_order = bool(random_order)
        self.seed = seed

    def build_state(self, tasks: list[Task]) -> None:
        m = len(tasks)
        self.targets = self.add_weight(
            name="targets",
            shape=(m, m),
            initializer="zeros",
            dtype="float32",
            trainable=False,
            aggregation="only_first_replica",
        )
        self.rng_state = _ops.make_rng_state(self, self.seed, "rng_state")

    def gramian_weights(self, gram: Any, num_columns: Any) -> Any:
        m = _ops.static_num_tasks(gram, "GradVac")
        if not hasattr(self, "targets"):
            raise ValueError("GradVac keeps state: call `build_for_tasks(tasks)` first.")
        keys = None
        if self.random_order:
            keys = _ops.draw_uniform(self.rng_state, (m, m))
        orders = _ops.visiting_orders(m, keys)
        targets = tf.convert_to_tensor(self.targets)
        diag = tf.linalg.diag_part(gram)
        beta, eps = self.beta, self.eps
        # Task i's walk only reads and writes row i (of the coefficients, of
        # the dot products and of the targets), so the m walks run side by
        # side: step k visits task orders[i, k] for every i at once.
        coeffs = tf.eye(m, dtype=gram.dtype)  # row i: g_i^PC = coeffs[i] @ J
        dots = gram  # row i: g_i^PC . g_k for every k
        rows = tf.range(m)
        for k in range(m):
            j = orders[:, k]
            onehot_j = tf.one_hot(j, m, dtype=gram.dtype)  # (m, m)
            valid = tf.not_equal(j, rows)
            norm_i = tf.sqrt(tf.maximum(tf.reduce_sum(dots * coeffs, axis=1), 0.0))
            norm_j = tf.sqrt(tf.maximum(tf.gather(diag, j), 0.0))
            phi = tf.reduce_sum(dots * onehot_j, axis=1) / (norm_i * norm_j + eps)
            phi_hat = tf.reduce_sum(targets * onehot_j, axis=1)
            sin = tf.sqrt(tf.maximum(1.0 - phi * phi, 0.0))
            sin_hat = tf.sqrt(tf.maximum(1.0 - phi_hat * phi_hat, 0.0))
            w = norm_i * (phi_hat * sin - phi * sin_hat) / (norm_j * sin_hat + eps)
            w = tf.where(tf.logical_and(valid, phi < phi_hat), w, 0.0)
            coeffs = coeffs + w[:, None] * onehot_j
            dots = dots + w[:, None] * tf.gather(gram, j)
            new = (1.0 - beta) * phi_hat + beta * phi
            cell = tf.logical_and(valid[:, None], onehot_j > 0)
            targets = tf.where(cell, new[:, None] * tf.ones_like(targets), targets)
        total = tf.reduce_sum(coeffs, axis=0)
        self.targets.assign(targets)
        return total

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "beta": self.beta,
            "eps": self.eps,
            "random_order": self.random_order,
            "seed": self.seed,
        }
