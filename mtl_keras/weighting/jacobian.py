"""Per-task gradients of the shared parameters, as one `(tasks, params)` matrix,
and the `JacobianSource`s a strategy takes them from."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from mtl_keras.representation import as_tensor_list, require
from mtl_keras.weighting import _ops
from mtl_keras.weighting.replicas import replica_context, replica_sum


def flatten(tensors: list[Any]) -> Any:
    """Concatenates tensors into one float32 vector (None counts as zeros)."""
    return tf.concat([tf.reshape(tf.cast(dense(t), tf.float32), [-1]) for t in tensors], axis=0)


def dense(grad: Any) -> Any:
    """A gradient as a dense tensor. A `tf.IndexedSlices` (an Embedding's
    gradient) is summed into its rows explicitly: a Jacobian row needs the
    dense table, and the implicit conversion would log TensorFlow's
    "Converting IndexedSlices ... to a dense representation" warning."""
    if not isinstance(grad, tf.IndexedSlices):
        return grad
    rows = tf.math.unsorted_segment_sum(grad.values, grad.indices, grad.dense_shape[0])
    return tf.reshape(rows, grad.dense_shape)


def unflatten(vector: Any, like: list[Any]) -> list[Any]:
    """Splits a flat vector back into tensors shaped (and typed) like `like`."""
    sizes = [
        int(tf.size(v)) if not v.shape.is_fully_defined() else v.shape.num_elements() for v in like
    ]
    parts = tf.split(vector, sizes)
    return [tf.cast(tf.reshape(p, v.shape), v.dtype) for p, v in zip(parts, like)]


#: how `task_jacobian` differentiates: "pfor" (one vectorised backward pass
#: over tasks, `tf.vectorized_map` under the hood) or "loop" (one backward
#: pass per task). Chosen by `benchmarks/weighting_speed.py`; "pfor" falls
#: back to "loop" when an op has no vectorisation rule.
JACOBIAN_METHOD = "pfor"


def fill_none(grads: list[Any], like: list[Any], leading: list[int] | None = None) -> list[Any]:
    """Replaces None (unconnected) gradients by float32 zeros shaped like
    `like` (with optional leading dims). Done by hand because
    `UnconnectedGradients.ZERO` chokes on Keras variables' string dtypes."""
    lead = leading or []
    return [
        tf.zeros(lead + list(v.shape), tf.float32) if g is None else g for g, v in zip(grads, like)
    ]


def num_tasks_of(task_losses: Any) -> int:
    """T for task losses given as a `(T,)` tensor or a list of T scalars."""
    if isinstance(task_losses, (list, tuple)):
        return len(task_losses)
    return _ops.static_num_tasks(task_losses, "Task losses")


def per_task(tape: tf.GradientTape, task_losses: Any) -> list[Any]:
    """The task losses as T scalars recorded on `tape`.

    A list is used as is. A `(T,)` tensor is sliced on the tape (a slice
    taken outside it is not connected); a backward pass from such a slice
    also runs through every other task's head with zero cotangents, so pass
    the losses before stacking where you have them (`StepContext.per_task_losses`).
    """
    if isinstance(task_losses, (list, tuple)):
        return list(task_losses)
    with tape:
        return tf.unstack(task_losses, num=num_tasks_of(task_losses))


def stacked(tape: tf.GradientTape, task_losses: Any) -> Any:
    """The task losses as one `(T,)` tensor recorded on `tape`."""
    if not isinstance(task_losses, (list, tuple)):
        return task_losses
    with tape:
        return tf.stack(list(task_losses))


def _loop_jacobian(tape: tf.GradientTape, task_losses: Any, variables: list[Any]) -> Any:
    rows = [
        flatten(fill_none(tape.gradient(loss, variables), variables))
        for loss in per_task(tape, task_losses)
    ]
    return tf.stack(rows, axis=0)


def _pfor_jacobian(tape: tf.GradientTape, task_losses: Any, variables: list[Any]) -> Any:
    task_losses = stacked(tape, task_losses)
    num_tasks = num_tasks_of(task_losses)

    def row(i: Any) -> list[Any]:
        # `tape.jacobian` without its implicit (warning) densification of
        # sparse gradients: each task's gradient, made dense by `dense`.
        with tape:
            loss = tf.gather(task_losses, i)
        grads = fill_none(tape.gradient(loss, variables), variables)
        return [tf.cast(dense(g), tf.float32) for g in grads]

    blocks = tf.vectorized_map(row, tf.range(num_tasks))
    return tf.concat([tf.reshape(tf.cast(b, tf.float32), [num_tasks, -1]) for b in blocks], axis=1)


def representation_jacobian(tape: tf.GradientTape, task_losses: Any, representation: Any) -> Any:
    """Per-task gradients w.r.t. the shared representation.

    For one tensor z: a tensor `(T,) + z.shape`; for a list of tensors (a
    representation made of several tensors, e.g. MMoE's experts and its
    gates' input): a list of such blocks, one per tensor.

    One backward pass per task: task t's loss reaches z only through its own
    tower, so each pass touches one tower. (A vectorised `tape.jacobian`
    would push all T cotangents through all T towers, T times the work.)
    """
    blocks, _ = representation_and_task_gradients(tape, task_losses, representation)
    return blocks if isinstance(representation, (list, tuple)) else blocks[0]


def representation_and_task_gradients(
    tape: tf.GradientTape,
    task_losses: Any,
    representation: Any,
    task_variables: list[list[Any]] | None = None,
) -> tuple[list[Any], list[list[Any]]]:
    """`representation_jacobian`'s blocks (always a list) and, from the same T
    backward passes, each task's gradients of `task_variables[t]` (its tower's
    parameters: only task t's loss reaches them), so the towers are not
    differentiated a second time for the task-specific update. Unconnected
    gradients are None, as `tape.gradient` gives them. `task_losses`: a
    `(T,)` tensor or, cheaper, the list of T scalars before stacking (see
    `per_task`).
    """
    reps = as_tensor_list(representation)
    losses = per_task(tape, task_losses)
    own = task_variables or [[] for _ in losses]
    rows, task_grads = [], []
    for loss, variables in zip(losses, own, strict=True):
        grads = tape.gradient(loss, [*reps, *variables])
        rows.append([tf.zeros_like(z) if g is None else g for g, z in zip(grads, reps)])
        task_grads.append(list(grads[len(reps) :]))
    blocks = [tf.stack([row[k] for row in rows], axis=0) for k in range(len(reps))]
    return blocks, task_grads


def pack_samples(blocks: list[Any], num_tasks: int) -> Any:
    """Per-task representation gradients as one float32 `(T, B * D)` matrix.

    Each block `(T, B, ...)` is flattened per sample and the blocks are
    concatenated per sample, so the matrix stays sample-major: under
    `tf.distribute` the global batch's matrix is the replicas' matrices side
    by side.
    """
    parts = [tf.reshape(tf.cast(b, tf.float32), [num_tasks, tf.shape(b)[1], -1]) for b in blocks]
    packed = parts[0] if len(parts) == 1 else tf.concat(parts, axis=2)
    return tf.reshape(packed, [num_tasks, -1])


def unpack_samples(vector: Any, like: list[Any]) -> list[Any]:
    """Inverse of `pack_samples` for one row: tensors shaped and typed like `like`."""
    batch = tf.shape(like[0])[0]
    widths = [_per_sample_size(z) for z in like]
    per_sample = tf.reshape(vector, [batch, -1])
    parts = tf.split(per_sample, widths, axis=1) if len(like) > 1 else [per_sample]
    return [tf.cast(tf.reshape(p, tf.shape(z)), z.dtype) for p, z in zip(parts, like)]


def _per_sample_size(z: Any) -> Any:
    size = z.shape[1:].num_elements()
    if size is None:
        raise ValueError(
            f"A representation tensor needs static non-batch dimensions, got shape {z.shape}."
        )
    return size


def _chain_jacobian(
    tape: tf.GradientTape,
    task_losses: Any,
    variables: list[Any],
    representation: Any,
    method: str,
) -> Any:
    """`J = J_z dz/dθ`: the task gradients on z pulled back through the trunk.

    torchjd's `mtl_backward` order: the towers are differentiated once per
    task (`representation_jacobian`), the trunk once for all T cotangents
    (vectorised with pfor, or one VJP per task with "loop"). Parameters z
    does not depend on are differentiated directly. z may be several tensors
    (none an ancestor of another): their VJPs add up.
    """
    reps = as_tensor_list(representation)
    jz = representation_jacobian(tape, task_losses, reps)
    num_tasks = num_tasks_of(task_losses)
    unconnected: list[int] = []

    def pullback(cotangents: list[Any]) -> list[Any]:
        grads = tape.gradient(reps, variables, output_gradients=list(cotangents))
        unconnected[:] = [i for i, g in enumerate(grads) if g is None]
        return [tf.reshape(tf.cast(g, tf.float32), [-1]) for g in fill_none(grads, variables)]

    if method == "pfor":
        blocks = tf.vectorized_map(pullback, jz)  # traces `pullback` once
        rows = tf.concat(blocks, axis=1)
    else:
        rows = tf.stack(
            [tf.concat(pullback([b[t] for b in jz]), axis=0) for t in range(num_tasks)], axis=0
        )
    if not unconnected:
        return rows
    # Shared parameters beside the representation: their own Jacobian.
    rest = [variables[i] for i in unconnected]
    direct = tf.split(task_jacobian(tape, task_losses, rest, method), _sizes(rest), axis=1)
    parts = tf.split(rows, _sizes(variables), axis=1)
    for i, block in zip(unconnected, direct):
        parts[i] = block
    return tf.concat(parts, axis=1)


def _sizes(variables: list[Any]) -> list[int]:
    return [int(v.shape.num_elements()) for v in variables]


def task_jacobian(
    tape: tf.GradientTape,
    task_losses: Any,
    variables: list[Any],
    method: str | None = None,
    representation: Any = None,
) -> Any:
    """Jacobian of `task_losses` w.r.t. `variables` (parameters or tensors
    recorded on the tape), flattened to float32 `(num_tasks, size)`.
    `task_losses`: a `(num_tasks,)` tensor, or the list of per-task scalars
    before stacking, which spares the per-task passes the other tasks' heads
    (see `per_task`).

    `method` (default `JACOBIAN_METHOD`): "pfor" vectorises the T backward
    passes into one (`GradientTape.jacobian` with pfor: batched matmuls
    instead of T separate gradient graphs); "loop" runs one backward pass per
    task on the persistent tape (T is static, so under `tf.function`/XLA it
    unrolls into T gradient graphs sharing the forward pass). If pfor cannot
    vectorise some op, tracing falls back to the loop; eagerly (a probe such
    as `gradient_similarity`) the loop is used.
    """
    method = method or JACOBIAN_METHOD
    if method not in ("pfor", "loop"):
        raise ValueError(f"Unknown Jacobian method {method!r}; expected 'pfor' or 'loop'.")
    num_tasks_of(task_losses)  # raises unless T is static
    if representation is not None:
        try:
            return _chain_jacobian(tape, task_losses, variables, representation, method)
        except (ValueError, TypeError, NotImplementedError, tf.errors.OpError):
            if method != "pfor":
                raise
            return _chain_jacobian(tape, task_losses, variables, representation, "loop")
    if method == "pfor" and not tf.executing_eagerly():
        # Eagerly, pfor traces a new tf.function on every call (slow, and
        # TensorFlow's retracing warning after five calls): loop instead.
        try:
            return _pfor_jacobian(tape, task_losses, variables)
        except (ValueError, TypeError, NotImplementedError, tf.errors.OpError):
            pass  # an op without a pfor rule: differentiate task by task
    return _loop_jacobian(tape, task_losses, variables)


def scaled_losses(ctx: Any) -> Any:
    """The step's task losses divided by the replicas and loss-scaled, recorded
    on the tape (what is differentiated; see `mtl_keras.weighting.base`)."""
    with ctx.tape:
        return ctx.scale_loss(ctx.task_losses / ctx.num_replicas)


def scaled_task_losses(ctx: Any) -> list[Any]:
    """`scaled_losses` as T separate scalars, from `ctx.per_task_losses` when
    the step has them (so that task t's backward pass meets task t's head
    only), else sliced from the vector."""
    if ctx.per_task_losses is None:
        return per_task(ctx.tape, scaled_losses(ctx))
    with ctx.tape:
        return [ctx.scale_loss(loss / ctx.num_replicas) for loss in ctx.per_task_losses]


def loss_scale(ctx: Any) -> Any:
    """The optimizer's loss scale as a float32 scalar (1 without mixed precision)."""
    return tf.cast(ctx.scale_loss(tf.constant(1.0)), tf.float32)


class JacobianSource:
    """Where a strategy gets the per-task gradient matrix of the shared
    parameters, and how a direction on it becomes parameter gradients.

    The split follows torchjd (autojac vs aggregation): a source differentiates,
    an aggregator only combines rows. Chosen once, at compile
    (`Weighting.select_source`). Every source handles `tf.distribute`: its
    `matrix` is the global batch's, identical on every replica, and
    `pull_back` returns gradients that the optimizer's sum over replicas
    turns into the single-device update.

    - `ParameterJacobian`: rows are the task gradients w.r.t. the variables.
    - `ChainRuleJacobian`: the same matrix, computed through the model's
      shared representation (towers once per task, trunk once for all).
    - `RepresentationJacobian`: rows are the task gradients w.r.t. the
      representation z (`rep_grad`), one column per sample and unit.

    Example:
    >>> source = ParameterJacobian()
    >>> source.needs_representation
    False
    """

    #: whether the step must record the model's representation on the tape
    needs_representation: bool = False

    def matrix(self, ctx: Any, variables: list[Any]) -> Any:
        """The float32 `(num_tasks, n)` Jacobian of the true (unscaled) task
        losses of the global batch."""
        raise NotImplementedError

    def pull_back(self, ctx: Any, direction: Any, variables: list[Any]) -> list[Any]:
        """Gradients for `variables` whose update follows `direction` (a row
        like the matrix's), loss-scaled and divided by the replicas as the
        optimizer expects."""
        raise NotImplementedError


class ParameterJacobian(JacobianSource):
    """Task gradients w.r.t. the parameters, all-reduced over replicas."""

    representation_aware = False

    def matrix(self, ctx: Any, variables: list[Any]) -> Any:
        reps = ctx.representation if self.representation_aware else None
        # Rows are this replica's share; their sum over replicas is the
        # global Jacobian, so every replica aggregates the same matrix.
        local = task_jacobian(ctx.tape, scaled_task_losses(ctx), variables, representation=reps)
        return replica_sum(local) / loss_scale(ctx)

    def pull_back(self, ctx: Any, direction: Any, variables: list[Any]) -> list[Any]:
        # The optimizer sums the replicas' (identical) directions and
        # un-scales them.
        return unflatten(direction * (loss_scale(ctx) / float(ctx.num_replicas)), variables)


class ChainRuleJacobian(ParameterJacobian):
    """`ParameterJacobian` computed by the chain rule through the representation."""

    needs_representation = True
    representation_aware = True


class RepresentationJacobian(JacobianSource):
    """Task gradients w.r.t. the shared representation z (MGDA-UB's `rep_grad`).

    Under `tf.distribute` the global matrix is the replicas' blocks side by
    side (MirroredStrategy splits the batch in order); each replica pulls
    back its own block of the direction.
    """

    needs_representation = True

    def __init__(self, strategy: str = "rep_grad") -> None:
        self.strategy = strategy

    def matrix(self, ctx: Any, variables: list[Any] | None = None) -> Any:
        return self.matrix_and_task_gradients(ctx)[0]

    def matrix_and_task_gradients(
        self, ctx: Any, task_variables: list[list[Any]] | None = None
    ) -> tuple[Any, list[list[Any]]]:
        """`matrix`, and each task's (loss-scaled, per-replica) gradients of
        `task_variables[t]` from the same backward passes (see
        `representation_and_task_gradients`)."""
        reps = require(ctx.representation, self.strategy)
        num_tasks = num_tasks_of(ctx.task_losses)
        blocks, task_grads = representation_and_task_gradients(
            ctx.tape, scaled_task_losses(ctx), reps, task_variables
        )
        local = pack_samples(blocks, num_tasks) / loss_scale(ctx)
        replica = replica_context()
        if replica is None:
            return local, task_grads
        gathered = replica.all_gather(tf.stop_gradient(local), axis=1)
        return tf.reshape(gathered, [num_tasks, -1]), task_grads  # keep T static

    def pull_back(self, ctx: Any, direction: Any, variables: list[Any]) -> list[Any]:
        reps = require(ctx.representation, self.strategy)
        replica = replica_context()
        if replica is not None:
            size = tf.shape(reps[0])[0] * sum(_per_sample_size(z) for z in reps)
            # Replicas may hold different numbers of rows (a global batch that
            # does not split evenly, e.g. 32/31 over two workers): this
            # replica's block starts after the blocks of the replicas before it.
            sizes = replica.all_gather(tf.reshape(size, [1]), axis=0)
            offset = tf.reduce_sum(sizes[: replica.replica_id_in_sync_group])
            direction = direction[offset : offset + size]
        upstream = unpack_samples(direction * loss_scale(ctx), reps)
        # Each replica pulls back its own block; the optimizer's sum over
        # replicas then gives the global-batch VJP.
        grads = ctx.tape.gradient(reps, variables, output_gradients=upstream)
        missing = [i for i, g in enumerate(grads) if g is None]
        if missing:
            # Shared parameters after the representation (or beside it) get
            # the plain sum-of-losses gradient.
            rest = [variables[i] for i in missing]
            losses = scaled_losses(ctx)
            with ctx.tape:
                total = tf.reduce_sum(losses)
            for i, g in zip(missing, fill_none(ctx.tape.gradient(total, rest), rest)):
                grads[i] = g
        return list(grads)
