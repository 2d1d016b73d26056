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

Shared representation (`rep_grad`). A model may name the layer(s) whose
outputs form the shared representation z (`MultiTaskModel(...,
representation="trunk")`; builders set it). z is a cut of the graph between
the shared parameters and the task-specific ones: every shared parameter
that z depends on reaches the task outputs only through z, and no tensor of
z is computed from another. Usually z is one tensor (a shared bottom's
trunk); it is several when the task-specific layers read shared tensors at
several places, e.g. MMoE with a trainable encoder (the experts' outputs and
the gates' input) or PLE (the last level's shared experts and each task's
input). `MultiTaskModel` checks the cut when it is built. When a strategy's
`needs_representation` is True (or `uses_representation` is and the model
has one), `train_step` runs the model so that z is recorded on the tape and
passes its tensors as `ctx.representation`. In `rep_grad` mode the per-task
gradients w.r.t. all of z's tensors form one row per task (concatenated per
sample), and the aggregated row is pulled back through all of them at once;
shared parameters that z does not depend on get the plain sum-of-losses
gradient. Full-Jacobian aggregators use z only to compute the same Jacobian
faster (chain rule).

Distribution (`tf.distribute`). Keras' optimizer *sums* the gradients of the
replicas. The model computes each task loss with `global_masked_mean`: its
value is the mean over the labelled rows of the *global* batch (identical on
every replica), while its gradient is `num_replicas` times this replica's
share of the global gradient. Hence every strategy can treat the loss as the
global one (non-linear weightings such as GeometricMean, FAMO or DWA and
their state updates see exactly the single-device values) and divide by
`num_replicas` before differentiating: the optimizer's sum then gives exactly
the single-device gradient. Simply dividing per-replica means by the number
of replicas would be wrong as soon as replicas see different numbers of
labelled rows, and non-linear weightings would see per-replica losses.
Aggregators all-reduce the per-task Jacobian (`replica_sum`) so that a
non-linear aggregator sees the global Jacobian; every replica computes the
same direction and returns it divided by `num_replicas`. In `rep_grad` mode
the representation Jacobian of the global batch is the concatenation of the
replicas' blocks (`all_gather` along the sample axis).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import keras
import tensorflow as tf

from mtl_keras.tasks import Task
from mtl_keras.weighting import _ops
from mtl_keras.weighting.jacobian import as_tensor_list


def _replica_context() -> Any:
    """The replica context when several replicas run in sync, else None."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync <= 1:
        return None
    return ctx


def replica_sum(value: Any) -> Any:
    """Sum of `value` over the replicas in sync (identity on one replica).

    Not differentiated through: callers use it on gradients/Jacobians or
    under `stop_gradient`.
    """
    ctx = _replica_context()
    if ctx is None:
        return value
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.stop_gradient(value))


def global_masked_mean(total: Any, count: Any) -> Any:
    """`total / count` summed over the replicas, with a per-replica gradient.

    `total` is this replica's sum of masked losses and `count` its number of
    labelled elements. The value is the global-batch mean on every replica;
    the gradient is `num_replicas * d(total) / global_count`, so that after
    the strategies' division by `num_replicas` and the optimizer's sum over
    replicas the update equals the single-device one (see module docstring).
    """
    ctx = _replica_context()
    if ctx is None:
        return tf.math.divide_no_nan(total, count)
    global_total, global_count = tf.unstack(
        ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.stop_gradient(tf.stack([total, count])))
    )
    local = float(ctx.num_replicas_in_sync) * tf.math.divide_no_nan(total, global_count)
    value = tf.math.divide_no_nan(global_total, global_count)
    return local + tf.stop_gradient(value - local)


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
        representation: optional list of the shared representation's
            tensors recorded on the tape (for representation-gradient
            aggregation; see the module docstring).
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


def missing_representation(strategy: str) -> ValueError:
    """The error for a strategy that needs a representation the model lacks."""
    return ValueError(
        f"{strategy} needs a model that declares its shared representation: build it "
        "with `representation=<layer name or names>` (every builder declares it; "
        "`split` only without a skip connection across the split), or use rep_grad=False."
    )


def require_representation(ctx: StepContext, strategy: str) -> list[Any]:
    """`ctx.representation` as a list of tensors, or a clear error."""
    reps = as_tensor_list(ctx.representation)
    if not reps:
        raise missing_representation(f"{strategy}(rep_grad=True)")
    return reps


class Weighting(keras.layers.Layer):
    """Base class of every weighting strategy.

    Subclasses create their state in `build_for_tasks` (called by
    `MultiTaskModel.compile`) and implement `compute_gradients`.
    """

    #: whether `MultiTaskModel` must record the step on a persistent tape
    needs_persistent_tape: bool = False
    #: whether `MultiTaskModel` must pass the shared representation
    needs_representation: bool = False
    #: whether the strategy uses the representation when the model has one
    #: (aggregators: the parameter Jacobian by the chain rule through it)
    uses_representation: bool = False

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

    def add_state(
        self,
        name: str,
        shape: tuple[int, ...],
        initializer: Any = "zeros",
        dtype: str = "float32",
        aggregation: str = "mean",
    ) -> Any:
        """A non-trainable state variable (saved, checkpointed, distributed).

        Task losses and Jacobians are global under `tf.distribute` (see the
        module docstring), so every replica computes the same update; the
        default "mean" aggregation keeps that value.
        """
        return self.add_weight(
            name=name,
            shape=shape,
            initializer=initializer,
            dtype=dtype,
            trainable=False,
            aggregation=aggregation,
        )

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

    Subclasses implement `combination(jacobian) -> weights` when the
    direction is `weights @ jacobian` (most methods: the weights come from
    the small Gramian and are what gets logged), or else
    `aggregate(jacobian) -> direction`; `jacobian` is a float32
    `(num_tasks, num_params)` tensor. The default `compute_gradients`
    materialises the Jacobian of the shared parameters (by the chain rule
    through the model's shared representation when it has one: each task
    tower is differentiated once, the trunk once for all tasks), aggregates
    it and gives task-specific parameters their task's gradient.

    With `rep_grad=True` the Jacobian is taken w.r.t. the shared
    representation `z` instead (MGDA-UB, Sener & Koltun 2018): one
    `(num_tasks, batch * dim)` matrix whose columns are the flattened
    per-sample representation gradients. The aggregated direction on `z` is
    pulled back through the trunk with one vector-Jacobian product. Much
    cheaper than the parameter Jacobian when `batch * dim` is small next to
    the number of shared parameters, but an approximation: the direction is
    optimal on `z`, not on the parameters. Needs a model with a
    `representation` (see module docstring).

    Args:
        rep_grad: aggregate representation gradients instead of parameter
            gradients.
    """

    needs_persistent_tape = True
    uses_representation = True
    #: whether the direction is a combination `w @ J` of the task gradients
    #: given by `combination` (then `w` is logged as the task weights);
    #: aggregators that are not (GradDrop) override `aggregate` instead.
    is_combination: bool = True

    def __init__(self, rep_grad: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rep_grad = bool(rep_grad)

    @property
    def needs_representation(self) -> bool:  # type: ignore[override]
        return self.rep_grad

    def aggregate(self, jacobian: Any) -> Any:
        """The update direction `(num_params,)` for a `(num_tasks, num_params)` Jacobian."""
        return _ops.combine(self.combination(jacobian), jacobian)

    def combination(self, jacobian: Any) -> Any:
        """The weights `w` (num_tasks,) of the direction `w @ jacobian`."""
        raise NotImplementedError(
            f"{type(self).__name__} implements neither `combination` nor `aggregate`."
        )

    def direction_and_weights(self, jacobian: Any) -> tuple[Any, Any]:
        """(direction, float32 per-task weights to log) for one Jacobian."""
        if self.is_combination:
            weights = self.combination(jacobian)
            return _ops.combine(weights, jacobian), tf.cast(weights, tf.float32)
        direction = self.aggregate(jacobian)
        return direction, self.effective_weights(jacobian, direction)

    def combine(self, task_losses: Any, training: bool = False) -> tuple[Any, Any]:
        weights = tf.ones_like(task_losses)
        return tf.reduce_sum(task_losses), weights

    def effective_weights(self, jacobian: Any, direction: Any) -> Any:
        """Per-task weights w such that direction ~ w @ jacobian (least squares),
        logged as `<task>_weight` for aggregators that are no combination."""
        gram = tf.matmul(jacobian, jacobian, transpose_b=True)
        rhs = tf.linalg.matvec(jacobian, direction)
        eye = tf.eye(tf.shape(gram)[0], dtype=gram.dtype)
        ridge = 1e-8 * (tf.linalg.trace(gram) + 1.0)
        return tf.linalg.solve(gram + ridge * eye, rhs[:, None])[:, 0]

    def _shared_from_parameters(
        self, ctx: StepContext, losses: Any, shared_vars: list[Any], loss_scale: Any
    ) -> tuple[list[Any], Any]:
        """Aggregates the (global) parameter Jacobian of the shared variables."""
        from mtl_keras.weighting.jacobian import task_jacobian, unflatten

        # Rows are this replica's share; their sum over replicas is the
        # global Jacobian, so every replica aggregates the same matrix.
        local = task_jacobian(ctx.tape, losses, shared_vars, representation=ctx.representation)
        jac = replica_sum(local) / loss_scale
        direction, weights = self.direction_and_weights(jac)
        # The optimizer sums the replicas' (identical) directions.
        scale = loss_scale / float(ctx.num_replicas)
        return unflatten(direction * scale, shared_vars), weights

    def _shared_from_representation(
        self,
        ctx: StepContext,
        losses: Any,
        objective: Any,
        shared_vars: list[Any],
        loss_scale: Any,
    ) -> tuple[list[Any], Any]:
        """Aggregates the Jacobian w.r.t. the representation, then one VJP."""
        from mtl_keras.weighting.jacobian import (
            fill_none,
            pack_samples,
            representation_jacobian,
            unpack_samples,
        )

        reps = require_representation(ctx, type(self).__name__)
        num_tasks = losses.shape[0]
        local = pack_samples(representation_jacobian(ctx.tape, losses, reps), num_tasks)
        local = local / loss_scale
        jac, offset = local, None
        replica = _replica_context()
        if replica is not None:
            # The global batch's matrix is the replicas' blocks side by side
            # (MirroredStrategy splits the batch in order).
            gathered = replica.all_gather(tf.stop_gradient(local), axis=1)
            jac = tf.reshape(gathered, [num_tasks, -1])  # keep T static
            # Replicas may hold different numbers of rows (a global batch that
            # does not split evenly): this replica's block starts after the
            # blocks of the replicas before it.
            sizes = replica.all_gather(tf.shape(local)[1:2], axis=0)
            offset = tf.reduce_sum(sizes[: replica.replica_id_in_sync_group])
        direction, weights = self.direction_and_weights(jac)
        if offset is not None:
            direction = direction[offset : offset + tf.shape(local)[1]]
        upstream = unpack_samples(direction * loss_scale, reps)
        # Each replica pulls back its own block; the optimizer's sum over
        # replicas then gives the global-batch VJP.
        grads = ctx.tape.gradient(reps, shared_vars, output_gradients=upstream)
        missing = [i for i, g in enumerate(grads) if g is None]
        if missing:
            # Shared parameters after the representation (or beside it).
            rest = [shared_vars[i] for i in missing]
            plain = fill_none(ctx.tape.gradient(objective, rest), rest)
            for i, g in zip(missing, plain):
                grads[i] = g
        return list(grads), weights

    def compute_gradients(self, ctx: StepContext) -> tuple[list[Any], Any]:
        from mtl_keras.weighting.jacobian import fill_none

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
            if self.rep_grad:
                shared_grads, weights = self._shared_from_representation(
                    ctx, losses, objective, shared_vars, loss_scale
                )
            else:
                shared_grads, weights = self._shared_from_parameters(
                    ctx, losses, shared_vars, loss_scale
                )
            for i, g in zip(ctx.shared, shared_grads):
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
            shared_vars = [ctx.variables[i] for i in ctx.shared]
            reg_grads = fill_none(ctx.tape.gradient(reg, shared_vars), shared_vars)
            for i, r in zip(ctx.shared, reg_grads):
                grads[i] = grads[i] + tf.cast(r, grads[i].dtype)
        return grads, weights

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rep_grad": self.rep_grad}
