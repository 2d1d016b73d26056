"""The contract between `MultiTaskModel` and a weighting strategy.

`MultiTaskModel.train_step` does the forward pass inside a `tf.GradientTape`,
computes one loss per task (mean over labelled rows), packs everything into a
`StepContext` and asks the strategy for gradients:

    grads, weights = model.weighting.compute_gradients(ctx)

Two families implement `compute_gradients`:

- `LossWeighting` (one backward pass): a subclass implements
  `combine(task_losses, training, priors, labelled) -> (total, weights)`;
  the base differentiates `total + regularization` once.
- `GradientAggregator`: a subclass implements `gramian_weights(gram,
  num_columns) -> weights` (weights from `G = J J^T` alone: most methods),
  `combination(jacobian) -> weights` or `aggregate(jacobian) -> direction` on the
  `(num_tasks, n)` Jacobian of the task losses; the Jacobian comes from the
  `JacobianSource` chosen at compile (`select_source`: parameters, chain
  rule through the representation, or the representation itself with
  `rep_grad`), which also pulls the direction back to the shared
  parameters and handles replicas and loss scaling. Task-specific
  parameters get their own task's gradient.

What a strategy knows about the step is explicit in `StepContext`: `priors`
(the static task weights: spec `weight` or `compile(loss_weights=...)`)
and `labelled` (labelled rows per task in the global batch). A strategy
declares `applies_priors`; `compile` refuses non-default static weights for
one that does not (FAMO, GeometricMean, GradNorm, every aggregator). A task
without labelled rows in a step must leave the strategy's state as it was
(its loss is 0 and gets no gradient; Uncertainty and IMTL-L drop its term,
DWA, FAMO, GradNorm and GeometricMean leave it out). Per-epoch state gets
`on_epoch_end`, driven by `MultiTaskModel.fit`.

All are Keras layers so that their state lives in Keras variables: it is
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
input). `MultiTaskModel` checks the cut when it is built
(`mtl_keras.representation.find_cut`). When the strategy's compiled
`JacobianSource` needs it (chain rule or `rep_grad`), `train_step` runs the
model so that z is recorded on the tape and passes its tensors as
`ctx.representation`. In `rep_grad` mode the per-task
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
from mtl_keras.weighting.jacobian import (
    ChainRuleJacobian,
    JacobianSource,
    ParameterJacobian,
    RepresentationJacobian,
    dense,
    scaled_losses,
)
from mtl_keras.weighting.replicas import global_masked_mean as global_masked_mean
from mtl_keras.weighting.replicas import replica_sum as replica_sum


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
        priors: float32 (num_tasks,) static task weights (spec `weight` or
            `compile(loss_weights=...)`); None means the tasks' own.
        labelled: float32 (num_tasks,) number of labelled rows (or tokens)
            per task in the global batch; None means unknown.
        per_task_losses: optional list of the same losses as separate
            scalars recorded on the tape, before they were stacked into
            `task_losses`. Per-task backward passes start from them: from a
            slice of the stacked vector, each pass would also run through
            every other task's head with zero cotangents (T^2 head passes).
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
    priors: Any = None
    labelled: Any = None
    per_task_losses: list[Any] | None = None


class Weighting(keras.layers.Layer):
    """Base class of every weighting strategy.

    Subclasses create their state in `build_for_tasks` (called by
    `MultiTaskModel.compile`) and implement `compute_gradients`.
    """

    #: whether `MultiTaskModel` must record the step on a persistent tape
    needs_persistent_tape: bool = False
    #: whether the strategy multiplies each task's loss by its static weight
    #: (`Task.weight` / `compile(loss_weights=...)`); `compile` refuses
    #: non-default static weights for a strategy that does not
    applies_priors: bool = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.task_names: list[str] = []
        #: set by `MultiTaskModel.compile` (`select_source`)
        self.jacobian_source: JacobianSource | None = None

    def select_source(self, has_representation: bool) -> JacobianSource | None:
        """The `JacobianSource` this strategy differentiates with, for a model
        with or without a declared representation (None: one backward pass)."""
        return None

    def source_for(self, ctx: StepContext) -> JacobianSource:
        """The compiled source, or one chosen from `ctx` (direct use without a model)."""
        source = self.jacobian_source or self.select_source(ctx.representation is not None)
        if source is None:
            raise ValueError(f"{type(self).__name__} differentiates with no Jacobian source.")
        return source

    @property
    def needs_representation(self) -> bool:
        """Whether the step must record the model's representation on the tape."""
        source = self.jacobian_source
        return source is not None and source.needs_representation

    def build_for_tasks(self, tasks: list[Task]) -> None:
        """Creates the strategy's state for these tasks."""
        self.task_names = [t.name for t in tasks]
        self.default_priors = [float(t.weight) for t in tasks]
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

    def prior_weights(self, priors: Any = None) -> Any:
        """The static task weights as float32 (num_tasks,): `priors` (the
        step's, see `StepContext.priors`) or the tasks' own."""
        if priors is None:
            priors = getattr(self, "default_priors", None) or [1.0] * self.num_tasks
        return tf.cast(tf.convert_to_tensor(priors), tf.float32)

    @staticmethod
    def labelled_mask(task_losses: Any, labelled: Any = None) -> Any:
        """1.0 for tasks with a labelled row in the step, else 0.0.

        `labelled` is the model's count (`StepContext.labelled`). Without it
        (a strategy used outside `MultiTaskModel`), a zero loss is taken to
        mean "no labelled row".
        """
        if labelled is None:
            return tf.cast(tf.cast(task_losses, tf.float32) > 0, tf.float32)
        return tf.cast(tf.convert_to_tensor(labelled) > 0, tf.float32)

    def combine(
        self, task_losses: Any, training: bool = False, priors: Any = None, labelled: Any = None
    ) -> tuple[Any, Any]:
        """Returns (scalar objective, per-task weights (num_tasks,)).

        Used by `test_step` to report a comparable `loss` and by loss
        weighting strategies as the training objective. Must not change state
        when `training` is False. `priors` and `labelled` are the step's (see
        `StepContext`); None: the tasks' own weights, labels unknown.
        """
        raise NotImplementedError

    def compute_gradients(self, ctx: StepContext) -> tuple[list[Any], Any]:
        """Returns (gradients aligned with `ctx.variables`, weights)."""
        raise NotImplementedError

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Called by `MultiTaskModel.fit` at the end of every training epoch
        (before the user's callbacks); override for per-epoch state (DWA)."""

    def log_trackers(self) -> list[Any]:
        """Extra Keras metrics the strategy logs (listed in `model.metrics`,
        reset with them); override with `update_logs` (Uncertainty)."""
        return []

    def update_logs(self, task_losses: Any, labelled: Any = None, priors: Any = None) -> None:
        """Updates `log_trackers` with one applied step (train or test)."""

    def call(self, task_losses: Any) -> Any:
        return self.combine(task_losses, training=False)[0]


class LossWeighting(Weighting):
    """A strategy that scales task losses and needs one backward pass."""

    def compute_gradients(self, ctx: StepContext) -> tuple[list[Any], Any]:
        # Re-enter the tape so that the combination (and any trainable state
        # in it, e.g. log-variances) is differentiated too.
        with ctx.tape:
            total, weights = self.combine(
                ctx.task_losses, training=True, priors=ctx.priors, labelled=ctx.labelled
            )
            if ctx.regularization_loss is not None:
                total = total + ctx.regularization_loss
            loss = ctx.scale_loss(total / ctx.num_replicas)
        grads = ctx.tape.gradient(loss, ctx.variables)
        return grads, weights


class GradientAggregator(Weighting):
    """A strategy that combines per-task gradients of the shared parameters.

    Subclasses implement `gramian_weights(gram, num_columns) -> weights`
    when the direction is `weights @ jacobian` with weights that depend on
    the Gramian `G = J J^T` only (most methods; they set `gramian_dtype`),
    `combination(jacobian) -> weights` when the weights need more of the
    Jacobian, or else `aggregate(jacobian) -> direction`; `jacobian` is a
    float32 `(num_tasks, num_params)` tensor. The weights are what gets
    logged. The default `compute_gradients`
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
    #: the direction is the aggregator's, whatever the static task weights
    applies_priors = False
    #: whether the direction is a combination `w @ J` of the task gradients
    #: given by `combination` (then `w` is logged as the task weights);
    #: aggregators that are not (GradDrop) override `aggregate` instead.
    is_combination: bool = True
    #: dtype of the Gramian `gramian_weights` takes (`tf.float64` where rank
    #: decisions need it), or None for weights that need more than `J J^T`
    gramian_dtype: Any = None
    #: with a float64 `gramian_dtype`: the smallest eigenvalue of the
    #: trace-normalised Gramian above which the step solves on the float32
    #: Gramian (one oneDNN matmul instead of a float64 copy of J and a
    #: float64 product, ~0.3 ms on a `(3, 65,536)` J); below it (nearly
    #: dependent task gradients, where the method's rank decisions need
    #: float64) the step computes the float64 Gramian. None: always
    #: `gramian_dtype`. `combination` always uses `gramian_dtype`.
    float32_gramian_above: float | None = None
    #: run `direction_and_weights` as its own XLA cluster (set by
    #: `MultiTaskModel.compile` for a step without XLA on CPU; see
    #: `mtl_keras.compile_defaults`)
    jit_solver: bool = False

    def __init__(self, rep_grad: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rep_grad = bool(rep_grad)

    def aggregate(self, jacobian: Any) -> Any:
        """The update direction `(num_params,)` for a `(num_tasks, num_params)` Jacobian."""
        return _ops.combine(self.combination(jacobian), jacobian)

    def combination(self, jacobian: Any) -> Any:
        """The weights `w` (num_tasks,) of the direction `w @ jacobian`."""
        if self.gramian_dtype is None:
            raise NotImplementedError(
                f"{type(self).__name__} implements neither `gramian_weights`, "
                "`combination` nor `aggregate`."
            )
        _ops.static_num_tasks(jacobian, type(self).__name__)
        gram = _ops.gramian(jacobian, self.gramian_dtype)
        return self.gramian_weights(gram, _ops.num_columns(jacobian))

    def gramian_weights(self, gram: Any, num_columns: Any) -> Any:
        """The weights `w` (num_tasks,) of the direction `w @ J` from `G = J J^T`.

        Args:
            gram: the `(num_tasks, num_tasks)` Gramian, in `gramian_dtype`.
            num_columns: the number of columns of `J` (a rank cut-off may
                depend on it, as `pinv`'s default does).
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement `gramian_weights`.")

    def direction_and_weights(self, jacobian: Any) -> tuple[Any, Any]:
        """(direction, float32 per-task weights to log) for one Jacobian."""
        if self.is_combination:
            weights = self.combination(jacobian)
            return _ops.combine(weights, jacobian), tf.cast(weights, tf.float32)
        direction = self.aggregate(jacobian)
        return direction, self.effective_weights(jacobian, direction)

    def combine(
        self, task_losses: Any, training: bool = False, priors: Any = None, labelled: Any = None
    ) -> tuple[Any, Any]:
        weights = tf.ones_like(task_losses)
        return tf.reduce_sum(task_losses), weights

    def solver(self) -> Any:
        """`direction_and_weights_or_nan`, with its small part as its own XLA
        cluster when `jit_solver` is set (by `mtl_keras.compile_defaults`, for
        a step that runs without XLA): the solvers are many small ops and
        `tf.while_loop`s that XLA fuses, while the passes over the large
        Jacobian run faster on TensorFlow's (oneDNN) kernels. For
        Gramian-based methods only the `(T, T)` solve is compiled (the
        Gramian and the direction are one oneDNN matmul each: XLA's CPU dot
        was ~40x slower on a `(3, 65,536)` Jacobian); for the others
        (GradDrop, a custom `combination`) the whole solver is.

        Returns:
            A callable `jacobian -> (direction, weights)`.

        Example:
        >>> from mtl_keras.weighting import get
        >>> upgrad = get("upgrad")
        >>> upgrad.solver() == upgrad.direction_and_weights_or_nan
        True
        """
        if not self.jit_solver:
            return self.direction_and_weights_or_nan
        if self._solves_on_gramian():
            weights_of = self._jit("_jit_weights_fn", self.gramian_weights_or_nan)
            float32_weights_of = self._jit("_jit_weights32_fn", self._float32_gramian_weights)

            def solve(jacobian: Any) -> tuple[Any, Any]:
                return self._solve_on_gramian(jacobian, weights_of, float32_weights_of)

            return solve
        return self._jit("_jit_solver_fn", self.direction_and_weights_or_nan)

    def _solve_on_gramian(
        self, jacobian: Any, weights_of: Any, float32_weights_of: Any
    ) -> tuple[Any, Any]:
        """(direction, weights) from the Gramian: in float32 when
        `float32_gramian_above` allows it, else in `gramian_dtype`."""
        columns = _ops.num_columns(jacobian)
        if (
            self.float32_gramian_above is None
            or self.gramian_dtype == tf.float32
            or tf.distribute.has_strategy()  # a cond branch cannot hold merge_calls
        ):
            weights = weights_of(_ops.gramian(jacobian, self.gramian_dtype), columns)
        else:
            weights, ok = float32_weights_of(_ops.gramian(jacobian), columns)
            weights = tf.cond(
                ok,
                lambda: weights,
                lambda: weights_of(_ops.gramian(jacobian, self.gramian_dtype), columns),
            )
        # NaN weights give a NaN direction.
        return _ops.combine(weights, jacobian), weights

    def _float32_gramian_weights(self, gram: Any, num_columns: Any) -> tuple[Any, Any]:
        """(weights from the float32 Gramian, whether it is conditioned well
        enough for them; when not, the weights are NaN and unused)."""
        floor = self.float32_gramian_above
        assert floor is not None, "only called when float32_gramian_above is set"
        ok = _ops.well_conditioned(gram, floor)
        num_tasks = _ops.static_num_tasks(gram, type(self).__name__)
        weights = tf.cond(
            ok,
            lambda: self.gramian_weights_or_nan(tf.cast(gram, self.gramian_dtype), num_columns),
            lambda: tf.fill([num_tasks], float("nan")),
        )
        return weights, ok

    def _jit(self, key: str, method: Any) -> Any:
        fn = self.__dict__.get(key)
        if fn is None:
            fn = tf.function(method, jit_compile=True)
            # Not a tracked attribute: a cache, rebuilt after deserialisation.
            object.__setattr__(self, key, fn)
        return fn

    def gramian_weights_or_nan(self, gram: Any, num_columns: Any) -> Any:
        """`gramian_weights` as float32, NaN when the Gramian is not finite
        (it is finite exactly when `J` is: its diagonal sums every entry's
        square; an overflow there is not finite either)."""
        num_tasks = _ops.static_num_tasks(gram, type(self).__name__)
        (weights,) = self._finite_or_nan(
            gram,
            lambda g: (tf.cast(self.gramian_weights(g, num_columns), tf.float32),),
            lambda: (tf.fill([num_tasks], float("nan")),),
        )
        return weights

    def direction_and_weights_or_nan(self, jacobian: Any) -> tuple[Any, Any]:
        """`direction_and_weights`, NaN when the Jacobian is not finite.

        Solvers (`tf.linalg.solve`, eigendecompositions) raise an opaque
        error on NaN input, so they run only on finite input; otherwise NaN
        is passed on, and the model's contracts name the non-finite gradient
        and skip or stop (see `mtl_keras.contracts`). Methods with
        `gramian_weights` check the small Gramian (`gramian_weights_or_nan`)
        and solve on it: one pass over `J` for the Gramian and one for the
        direction, none for the check. Others check the Jacobian. The check
        is a `tf.cond`, not a masked copy, outside `tf.distribute`.
        """
        num_tasks = _ops.static_num_tasks(jacobian, type(self).__name__)
        if self._solves_on_gramian():
            return self._solve_on_gramian(
                jacobian, self.gramian_weights_or_nan, self._float32_gramian_weights
            )
        nan = float("nan")

        def solve(matrix: Any) -> tuple[Any, Any]:
            direction, weights = self.direction_and_weights(matrix)
            return direction, tf.cast(weights, tf.float32)

        def not_finite() -> tuple[Any, Any]:
            direction = tf.zeros_like(jacobian[0]) + tf.cast(nan, jacobian.dtype)
            return direction, tf.fill([num_tasks], nan)

        return self._finite_or_nan(jacobian, solve, not_finite)

    def _solves_on_gramian(self) -> bool:
        """Whether the weights come from `gramian_weights` alone: not when a
        subclass overrides `combination` or `direction_and_weights` (its
        override is what runs then)."""
        cls = type(self)
        return (
            self.is_combination
            and self.gramian_dtype is not None
            and cls.combination is GradientAggregator.combination
            and cls.direction_and_weights is GradientAggregator.direction_and_weights
        )

    @staticmethod
    def _finite_or_nan(matrix: Any, solve: Any, not_finite: Any) -> tuple[Any, ...]:
        """`solve(matrix)` if `matrix` is finite, else `not_finite()`."""
        ok = tf.reduce_all(tf.math.is_finite(matrix))
        if tf.distribute.has_strategy():
            # State updates (NashMTL, GradVac) are `merge_call`s under a
            # strategy, which a cond branch cannot hold: solve on a masked copy.
            outputs = solve(tf.where(ok, matrix, tf.zeros_like(matrix)))
            return tuple(tf.where(ok, o, tf.cast(float("nan"), o.dtype)) for o in outputs)
        return tf.cond(ok, lambda: solve(matrix), not_finite)

    def effective_weights(self, jacobian: Any, direction: Any) -> Any:
        """Per-task weights w such that direction ~ w @ jacobian (least squares),
        logged as `<task>_weight` for aggregators that are no combination."""
        gram = tf.matmul(jacobian, jacobian, transpose_b=True)
        rhs = tf.linalg.matvec(jacobian, direction)
        eye = tf.eye(tf.shape(gram)[0], dtype=gram.dtype)
        ridge = 1e-8 * (tf.linalg.trace(gram) + 1.0)
        return tf.linalg.solve(gram + ridge * eye, rhs[:, None])[:, 0]

    def select_source(self, has_representation: bool) -> JacobianSource:
        if self.rep_grad:
            return RepresentationJacobian(f"{type(self).__name__}(rep_grad=True)")
        return ChainRuleJacobian() if has_representation else ParameterJacobian()

    def compute_gradients(self, ctx: StepContext) -> tuple[list[Any], Any]:
        source = self.source_for(ctx)
        losses = scaled_losses(ctx)
        with ctx.tape:  # record the scaling so the tape can differentiate it
            objective = tf.reduce_sum(losses)
            reg = None
            if ctx.regularization_loss is not None:
                reg = ctx.scale_loss(ctx.regularization_loss / ctx.num_replicas)
        grads: list[Any] = [None] * len(ctx.variables)
        weights = tf.ones_like(ctx.task_losses)
        shared_vars = [ctx.variables[i] for i in ctx.shared]
        # Task-specific gradients that came with the matrix (rep_grad: the
        # towers' backward passes give them), by variable index.
        folded: dict[int, Any] = {}
        if shared_vars:
            if isinstance(source, RepresentationJacobian):
                groups = [[ctx.variables[i] for i in idx] for idx in ctx.task_specific]
                matrix, task_grads = source.matrix_and_task_gradients(ctx, groups)
                for idx, task_grad in zip(ctx.task_specific, task_grads):
                    folded.update(zip(idx, task_grad))
            else:
                matrix = source.matrix(ctx, shared_vars)
            # XLA for the solver alone on CPU (compile_defaults)
            direction, weights = self.solver()(matrix)
            for i, g in zip(ctx.shared, source.pull_back(ctx, direction, shared_vars)):
                grads[i] = g
        for i, g in folded.items():
            grads[i] = g
        shared = set(ctx.shared)
        others = [i for i in range(len(ctx.variables)) if i not in shared and i not in folded]
        if others:
            # Task-specific parameters only see their own task's loss, so the
            # gradient of the plain sum gives each its own task's gradient.
            if reg is not None:
                with ctx.tape:
                    objective = objective + reg
            own = ctx.tape.gradient(objective, [ctx.variables[i] for i in others])
            for i, g in zip(others, own):
                grads[i] = g
        # Regularization is added after aggregation (shared parameters) and
        # after the tasks' own passes (folded tower parameters).
        regularized = [*ctx.shared, *folded] if reg is not None else []
        if regularized:
            penalty = ctx.tape.gradient(reg, [ctx.variables[i] for i in regularized])
            for i, r in zip(regularized, penalty):
                if r is not None:
                    g = grads[i]
                    grads[i] = r if g is None else dense(g) + tf.cast(r, g.dtype)
        return grads, weights

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rep_grad": self.rep_grad}
