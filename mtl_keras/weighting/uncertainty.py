"""Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018)."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from mtl_keras import graph
from mtl_keras.scalar_mean import ScalarMean
from mtl_keras.tasks import Regression, Task
from mtl_keras.weighting.base import LossWeighting


@keras.saving.register_keras_serializable(package="mtl_keras")
class LogVarBounds(keras.constraints.Constraint):
    """Clips log-variances into `[min_value, max_value]` after each update.

    Args:
        min_value: lower bound of every `s_t`.
        max_value: upper bound of every `s_t`.

    Example:
    >>> LogVarBounds(-10.0, 10.0).get_config()
    {'min_value': -10.0, 'max_value': 10.0}
    """

    def __init__(self, min_value: float, max_value: float) -> None:
        self.min_value = float(min_value)
        self.max_value = float(max_value)

    def __call__(self, w: Any) -> Any:
        return keras.ops.clip(w, self.min_value, self.max_value)

    def get_config(self) -> dict[str, Any]:
        return {"min_value": self.min_value, "max_value": self.max_value}


@keras.saving.register_keras_serializable(package="mtl_keras")
class Uncertainty(LossWeighting):
    """Learns one log-variance `s_t = log(sigma_t^2)` per task.

    Objective (Kendall et al. 2018, eqs. 7 and 10, written with `s_t` for
    numerical stability):

    - regression tasks (Gaussian likelihood):
      `0.5 * exp(-s_t) * L_t + 0.5 * s_t`
    - classification tasks (Binary, Multiclass, Multilabel; scaled softmax /
      sigmoid likelihood): `exp(-s_t) * L_t + 0.5 * s_t`

    The logged weight of task t is the factor in front of `L_t`
    (`0.5 * exp(-s_t)` or `exp(-s_t)`). Static task weights multiply `L_t`
    before this, so they still act as priors. A task with no labelled row in
    the step leaves the objective (its `s_t` gets no gradient). `s_t` starts at `init_log_var`
    (0: weights 0.5 / 1) and is trained by the model's optimizer.

    `s_t` is kept in `log_var_bounds` (a constraint applied after every
    optimizer step, and a clip in the objective): with too large a learning
    rate `s_t` otherwise runs away (1e8), every weight becomes 0.0 and the
    logged `loss` (the weighted sum of task losses) reads 0.0 while the task
    losses are 1e25, so `TerminateOnNaN` and early stopping see nothing.
    With the default bounds a weight stays within `[4.5e-5, 2.2e4]` times
    its factor, so the logged `loss` keeps tracking the tasks. A task whose
    `s_t` sits at a bound is reported in `at_bounds()`.

    Logs: `loss` is the weighted sum of the task losses `sum_t w_t L_t`
    (what `TerminateOnNaN` and early stopping watch; it can fall by raising
    `s_t`, i.e. by down-weighting a task), and `uncertainty_objective`
    (`val_uncertainty_objective` in validation) is the full objective above,
    `sum_t w_t L_t + 0.5 s_t`, the quantity the optimizer minimises, which
    down-weighting cannot lower for free.

    Args:
        init_log_var: initial value of every `s_t`.
        log_var_bounds: `(min, max)` of every `s_t` (default `(-10, 10)`);
            `None` leaves them unbounded (not recommended).

    Example:
    >>> from mtl_keras import weighting
    >>> strategy = weighting.Uncertainty()
    """

    def __init__(
        self,
        init_log_var: float = 0.0,
        log_var_bounds: tuple[float, float] | None = (-10.0, 10.0),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.init_log_var = float(init_log_var)
        if log_var_bounds is not None:
            low, high = (float(b) for b in log_var_bounds)
            if not low <= self.init_log_var <= high:
                raise ValueError(
                    f"Uncertainty: `log_var_bounds` {(low, high)} must satisfy "
                    f"min <= init_log_var ({self.init_log_var}) <= max."
                )
            log_var_bounds = (low, high)
        self.log_var_bounds = log_var_bounds

    def build_state(self, tasks: list[Task]) -> None:
        self.log_vars = self.add_weight(
            name="log_vars",
            shape=(len(tasks),),
            initializer=keras.initializers.Constant(self.init_log_var),
            dtype="float32",
            constraint=None if self.log_var_bounds is None else LogVarBounds(*self.log_var_bounds),
        )
        self._factor = [0.5 if isinstance(t, Regression) else 1.0 for t in tasks]
        with graph.untracked():  # a log, not state: not saved with the model
            self._objective = ScalarMean(name="uncertainty_objective")

    def log_trackers(self) -> list[Any]:
        return [self._objective] if hasattr(self, "_objective") else []

    def update_logs(self, task_losses: Any, labelled: Any = None, priors: Any = None) -> None:
        total, _ = self.combine(task_losses, training=False, priors=priors, labelled=labelled)
        self._objective.update_state(total)

    def combine(
        self, task_losses: Any, training: bool = False, priors: Any = None, labelled: Any = None
    ) -> tuple[Any, Any]:
        log_vars = tf.convert_to_tensor(self.log_vars)
        if self.log_var_bounds is not None:
            # Also here: a value assigned (or restored) out of bounds.
            log_vars = tf.clip_by_value(log_vars, *self.log_var_bounds)
        weights = tf.constant(self._factor, tf.float32) * tf.exp(-log_vars)
        # A task without labelled rows contributes nothing, so its
        # log-variance gets no gradient (the 0.5 * s_t term alone would
        # drive it down and its weight up).
        present = self.labelled_mask(task_losses, labelled)
        terms = weights * self.prior_weights(priors) * task_losses + 0.5 * log_vars
        total = tf.reduce_sum(present * terms)
        return total, weights

    def at_bounds(self, task_names: list[str] | None = None) -> list[str]:
        """Tasks (names, or `t<index>`) whose log-variance sits at a bound.

        Example:
        >>> model.compile("adam", weighting=Uncertainty(log_var_bounds=(-1.0, 1.0)))
        >>> model.weighting.at_bounds(model.task_names)  # `model`: see conftest.py
        []
        >>> _ = model.weighting.log_vars.assign([0.0, 1.0])  # e.g. after a long fit
        >>> model.weighting.at_bounds(model.task_names)
        ['dwell']
        """
        if self.log_var_bounds is None:
            return []
        values = keras.ops.convert_to_numpy(self.log_vars)
        low, high = self.log_var_bounds
        names = task_names or [f"t{i}" for i in range(len(values))]
        return [n for n, v in zip(names, values) if v <= low or v >= high]

    def get_config(self) -> dict[str, Any]:
        bounds = None if self.log_var_bounds is None else list(self.log_var_bounds)
        return {**super().get_config(), "init_log_var": self.init_log_var, "log_var_bounds": bounds}
