"""The contract between `MultiTaskModel` and a weighting strategy.

`MultiTaskModel.train_step` does the forward pass inside a `tf.GradientTape`,
computes one loss per task (mean over labelled rows), packs everything into a
`StepContext` and asks the strategy for gradients:

    grads, weights = model.weighting.compute_gradients(ctx)

Two families implement `compute_gradients`:

- `LossWeighting` (one backward pass): a subclass implements
  `combine(task_losses, training) -> (total, weights)`; the base
  differentiates `total + regularization` once.
- `GradientAggregator`: a subclass implements `aggregate(jacobian) ->
  direction` on the `(num_tasks, num_shared_params)` Jacobian of the task
  losses w.r.t. the shared parameters; task-specific parameters get their
  own task's gradient.

Both are Keras layers so that their state lives in Keras variables: it is
checkpointed, saved in `.keras` files and placed by `tf.distribute`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import keras
import tensorflow as tf

from mtl_keras.tasks import Task


@dataclasses.dataclass
class StepContext:
    """What a strategy needs to turn task losses into gradients.

    Attributes:
        tape: the (persistent) tape that recorded the forward pass.
        task_losses: float32 tensor (num_tasks,), mean loss over labelled rows.
        regularization_loss: scalar float32 sum of `model.losses`, or None.
        variables: the trainable variables to return gradients for.
        shared: indices into `variables` of parameters used by several tasks.
        task_specific: per task, indices into `variables` used by that task
            only.
        own: indices into `variables` that belong to the strategy itself
            (e.g. log-variances); they follow the combined loss.
        scale_loss: the optimizer's loss scaling (mixed_float16), identity
            otherwise; applied before differentiation.
        num_replicas: replicas in sync; losses are divided by it because the
            optimizer sums gradients across replicas.
        representation: optional shared representation tensor(s) recorded on
            the tape (for representation-gradient aggregation).
    """

    tape: tf.GradientTape
    task_losses: Any
    regularization_loss: Any
    variables: list[Any]
    shared: list[int]
    task_specific: list[list[int]]
    own: list[int]
    scale_loss: Callable[[Any], Any]
    num_replicas: int = 1
    representation: Any = None


class Weighting(keras.layers.Layer):
    """Base class of every weighting strategy.

    Subclasses create their state in `build_for_tasks` (called by
    `MultiTaskModel.compile`) and implement `compute_gradients`.
    """

    #: whether `MultiTaskModel` must record the step on a persistent tape
    needs_persistent_tape: bool = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.task_names: list[str] = []

    def build_for_tasks(self, tasks: list[Task]) -> None:
        """Creates the strategy's state for these tasks."""
        self.task_names = [t.name for t in tasks]
        self.build_state(tasks)
        self.built = True

    def build_state(self, tasks: list[Task]) -> None:
        """Override to create variables (one per task, etc.)."""

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    def combine(self, task_losses: Any, training: bool = False) -> tuple[Any, Any]:
        """Returns (scalar objective, per-task weights (num_tasks,)).

        Used by `test_step` to report a comparable `loss` and by loss
        weighting strategies as the training objective. Must not change state
        when `training` is False.
        """
        raise NotImplementedError

    def compute_gradients(self, ctx: StepContext) -> tuple[list[Any], Any]:
        """Returns (gradients aligned with `ctx.variables`, weights)."""
        raise NotImplementedError

    def call(self, task_losses: Any) -> Any:
        return self.combine(task_losses, training=False)[0]


class LossWeighting(Weighting):
    """A strategy that scales task losses and needs one backward pass."""

    def compute_gradients(self, ctx: StepContext) -> tuple[list[Any], Any]:
        # Re-enter the tape so that the combination (and any trainable state
        # in it, e.g. log-variances) is differentiated too.
        with ctx.tape:
            total, weights = self.combine(ctx.task_losses, training=True)
            if ctx.regularization_loss is not None:
                total = total + ctx.regularization_loss
            loss = ctx.scale_loss(total / ctx.num_replicas)
        grads = ctx.tape.gradient(loss, ctx.variables)
        return grads, weights


class GradientAggregator(Weighting):
    """A strategy that combines per-task gradients of the shared parameters.

    Subclasses implement `aggregate(jacobian) -> direction` where `jacobian`
    is a float32 `(num_tasks, num_params)` tensor; the default
    `compute_gradients` materialises the Jacobian of the shared parameters,
    aggregates it and gives task-specific parameters their task's gradient.
    """

    needs_persistent_tape = True

    def aggregate(self, jacobian: Any) -> Any:
        raise NotImplementedError

    def combine(self, task_losses: Any, training: bool = False) -> tuple[Any, Any]:
        weights = tf.ones_like(task_losses)
        return tf.reduce_sum(task_losses), weights

    def effective_weights(self, jacobian: Any, direction: Any) -> Any:
        """Per-task weights w such that direction ~ w @ jacobian (least squares),
        logged as `<task>_weight`."""
        gram = tf.matmul(jacobian, jacobian, transpose_b=True)
        rhs = tf.linalg.matvec(jacobian, direction)
        eye = tf.eye(tf.shape(gram)[0], dtype=gram.dtype)
        ridge = 1e-8 * (tf.linalg.trace(gram) + 1.0)
        return tf.linalg.solve(gram + ridge * eye, rhs[:, None])[:, 0]

    def compute_gradients(self, ctx: StepContext) -> tuple[list[Any], Any]:
        from mtl_keras.weighting.jacobian import task_jacobian, unflatten

        with ctx.tape:  # record the scaling so the tape can differentiate it
            losses = ctx.scale_loss(ctx.task_losses / ctx.num_replicas)
            reg = None
            if ctx.regularization_loss is not None:
                reg = ctx.scale_loss(ctx.regularization_loss / ctx.num_replicas)
            objective = tf.reduce_sum(losses) + (reg if reg is not None else 0.0)
        # The optimizer un-scales what we return, so aggregate the true
        # Jacobian and hand back the direction times the loss scale.
        loss_scale = tf.cast(ctx.scale_loss(tf.constant(1.0)), tf.float32)
        grads: list[Any] = [None] * len(ctx.variables)
        weights = tf.ones_like(ctx.task_losses)
        if ctx.shared:
            shared_vars = [ctx.variables[i] for i in ctx.shared]
            jac = task_jacobian(ctx.tape, losses, shared_vars) / loss_scale
            direction = self.aggregate(jac)
            weights = self.effective_weights(jac, direction)
            for i, g in zip(ctx.shared, unflatten(direction * loss_scale, shared_vars)):
                grads[i] = g
        shared = set(ctx.shared)
        others = [i for i in range(len(ctx.variables)) if i not in shared]
        if others:
            # Task-specific parameters only see their own task's loss, so the
            # gradient of the plain sum gives each its own task's gradient.
            own = ctx.tape.gradient(objective, [ctx.variables[i] for i in others])
            for i, g in zip(others, own):
                grads[i] = g
        if reg is not None and ctx.shared:
            # Regularization of shared parameters is added after aggregation.
            reg_grads = ctx.tape.gradient(
                reg,
                [ctx.variables[i] for i in ctx.shared],
                unconnected_gradients=tf.UnconnectedGradients.ZERO,
            )
            for i, r in zip(ctx.shared, reg_grads):
                grads[i] = grads[i] + tf.cast(r, grads[i].dtype)
        return grads, weights
