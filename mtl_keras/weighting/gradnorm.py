"""GradNorm (Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018)."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from mtl_keras.tasks import Task
from mtl_keras.weighting.base import (
    LossWeighting,
    StepContext,
    replica_sum,
    require_representation,
)
from mtl_keras.weighting.jacobian import pack_samples, representation_jacobian


def _replica_mean(value: Any) -> Any:
    """Mean over `tf.distribute` replicas (identity on one device).

    The mean of the replicas' loss gradients is the global-batch gradient, so
    every replica measures the same norms and computes the same weight update.
    """
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return value
    return ctx.all_reduce(tf.distribute.ReduceOp.MEAN, value)


@keras.saving.register_keras_serializable(package="mtl_keras")
class GradNorm(LossWeighting):
    """Learns task weights that equalise the tasks' gradient norms.

    Chen, Badrinarayanan, Lee & Rabinovich, "GradNorm: Gradient Normalization
    for Adaptive Loss Balancing in Deep Multitask Networks", ICML 2018.
    With learnable weights `w_i` (renormalised to sum to T, the number of
    tasks), `W` the last shared layer's kernel and `L_i(0)` the first loss
    seen for task i:

        G_i   = || grad_W (w_i * L_i) || = w_i * || grad_W L_i ||
        G_bar = mean_i G_i
        r_i   = (L_i / L_i(0)) / mean_j (L_j / L_j(0))
        L_grad = sum_i | G_i - stop_gradient(G_bar * r_i ** alpha) |

    The network follows `grad sum_i w_i * L_i`; the weights follow
    `dL_grad/dw_i = sign(G_i - target_i) * ||grad_W L_i||` and are updated by
    the model's optimizer (they are this strategy's trainable variables), then
    renormalised to sum to T at the start of the next step. The logged
    weights are the normalised `w_i`.

    `W` is the last trainable shared variable of rank >= 2 in
    `model.trainable_variables` order (layer order), i.e. the kernel of the
    last shared Dense/Conv layer, falling back to the last shared variable;
    the paper uses the last shared layer's weights. Tasks with a zero loss in
    a batch (no labelled row) get no weight gradient and are left out of the
    means. Static task weights (spec `weight`) do not apply: GradNorm learns
    the weights. Costs one extra backward pass per task (from its loss down
    to `W` only), hence a persistent tape. As the model's optimizer updates
    the weights, its learning rate applies; with a weight-decaying optimizer
    exclude them, e.g. `AdamW(...).exclude_from_weight_decay(
    var_names=["task_weights"])`.

    Args:
        alpha: asymmetry `alpha` (default 1.5; the paper tunes it per data
            set). Larger pulls harder towards equal training rates; 0 only
            equalises gradient norms.
        min_weight: floor of each raw weight before renormalisation, keeping
            weights positive.
        rep_grad: measure `||grad_z L_i||` on the model's shared
            representation z (its output for the whole batch) instead of the
            last shared kernel, as LibMTL's `rep_grad` option: one backward
            pass per task tower instead of down to the kernel, cheaper when
            the last shared layer is large. Needs a model with a
            `representation` (e.g. `builders.shared_bottom`).

    Example:
    >>> from mtl_keras import weighting
    >>> strategy = weighting.GradNorm(alpha=1.5)
    """

    needs_persistent_tape = True

    @property
    def needs_representation(self) -> bool:  # type: ignore[override]
        return self.rep_grad

    def __init__(
        self,
        alpha: float = 1.5,
        min_weight: float = 1e-3,
        rep_grad: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.rep_grad = bool(rep_grad)
        if alpha < 0:
            raise ValueError(f"GradNorm: `alpha` must be >= 0, got {alpha!r}.")
        if min_weight <= 0:
            raise ValueError(f"GradNorm: `min_weight` must be > 0, got {min_weight!r}.")
        self.alpha = float(alpha)
        self.min_weight = float(min_weight)

    def build_state(self, tasks: list[Task]) -> None:
        self.task_weights = self.add_weight(
            name="task_weights", shape=(len(tasks),), initializer="ones", dtype="float32"
        )
        self.initial_losses = self.add_state("initial_losses", (len(tasks),))

    def normalized_weights(self) -> Any:
        """`T * w / sum(w)` with `w` floored at `min_weight`."""
        w = tf.maximum(tf.convert_to_tensor(self.task_weights), self.min_weight)
        return float(self.num_tasks) * w / tf.reduce_sum(w)

    def combine(self, task_losses: Any, training: bool = False) -> tuple[Any, Any]:
        weights = tf.stop_gradient(self.normalized_weights())
        return tf.reduce_sum(weights * task_losses), weights

    @staticmethod
    def select_shared(ctx: StepContext) -> list[int]:
        """Indices of the variables GradNorm measures gradient norms on."""
        if not ctx.shared:
            return []
        kernels = [i for i in ctx.shared if len(ctx.variables[i].shape) >= 2]
        return [kernels[-1] if kernels else ctx.shared[-1]]

    def weight_gradient(self, weights: Any, grad_norms: Any, task_losses: Any) -> Any:
        """`dL_grad / dw` given normalised weights and `||grad_W L_i||`."""
        losses = tf.cast(task_losses, tf.float32)
        present = tf.cast(losses > 0, tf.float32)
        count = tf.reduce_sum(present)
        initial = tf.convert_to_tensor(self.initial_losses)
        ratio = present * tf.math.divide_no_nan(losses, initial)
        mean_ratio = tf.math.divide_no_nan(tf.reduce_sum(ratio), count)
        rel = tf.math.divide_no_nan(ratio, mean_ratio)
        g = weights * grad_norms
        g_bar = tf.math.divide_no_nan(tf.reduce_sum(g * present), count)
        target = tf.stop_gradient(g_bar * tf.pow(rel, self.alpha))
        return present * tf.sign(g - target) * grad_norms

    def compute_gradients(self, ctx: StepContext) -> tuple[list[Any], Any]:
        losses = tf.stop_gradient(tf.cast(ctx.task_losses, tf.float32))
        # L_i(0): the first non-zero loss of each task.
        self.initial_losses.assign(tf.where(self.initial_losses > 0, self.initial_losses, losses))
        weights = self.normalized_weights()
        # Keep the state renormalised (the optimizer moved it last step).
        self.task_weights.assign(weights)
        with ctx.tape:
            total = tf.reduce_sum(weights * ctx.task_losses)
            if ctx.regularization_loss is not None:
                total = total + ctx.regularization_loss
            loss = ctx.scale_loss(total / ctx.num_replicas)
            scaled = ctx.scale_loss(ctx.task_losses)
        own = set(ctx.own)
        net = [i for i in range(len(ctx.variables)) if i not in own]
        grads: list[Any] = [None] * len(ctx.variables)
        for i, g in zip(net, ctx.tape.gradient(loss, [ctx.variables[i] for i in net])):
            grads[i] = g
        loss_scale = tf.cast(ctx.scale_loss(tf.constant(1.0)), tf.float32)
        if self.rep_grad:
            norms = self._representation_norms(ctx, scaled) / loss_scale
        else:
            norms = self._kernel_norms(ctx, scaled) / loss_scale
        grad_w = self.weight_gradient(weights, norms, losses)
        # The optimizer un-scales and sums over replicas what we return.
        for i in ctx.own:
            if ctx.variables[i] is self.task_weights:
                grads[i] = grad_w * loss_scale / ctx.num_replicas
        return grads, weights

    def _kernel_norms(self, ctx: StepContext, scaled: Any) -> Any:
        """`||grad_W L_i||` on the last shared kernel W, global over replicas."""
        probe = [ctx.variables[i] for i in self.select_shared(ctx)]
        if not probe:
            return tf.zeros([self.num_tasks])
        with ctx.tape:  # slices taken outside the tape are not recorded
            per_task = tf.unstack(scaled, num=self.num_tasks)
        norms = []
        for loss in per_task:
            g = [_replica_mean(x) for x in ctx.tape.gradient(loss, probe) if x is not None]
            norms.append(
                tf.linalg.global_norm([tf.cast(x, tf.float32) for x in g])
                if g
                else tf.constant(0.0)
            )
        return tf.stack(norms)

    def _representation_norms(self, ctx: StepContext, scaled: Any) -> Any:
        """`||grad_z L_i||` over the global batch's representation z."""
        reps = require_representation(ctx, "GradNorm")
        flat = pack_samples(representation_jacobian(ctx.tape, scaled, reps), self.num_tasks)
        # Each replica holds num_replicas x its block of the global gradient
        # (see `global_masked_mean`); the blocks tile the global batch.
        squares = replica_sum(tf.reduce_sum(tf.square(flat), axis=1))
        return tf.sqrt(squares) / float(ctx.num_replicas)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "alpha": self.alpha,
            "min_weight": self.min_weight,
            "rep_grad": self.rep_grad,
        }
