"""A train/test step's logs as one tensor out of the graph, unpacked on the host.

A `MultiTaskModel` logs a loss, a weight and its metrics per task: at 8
regression tasks, 33 scalars per step. Keras returns each as its own output
of the step function and then converts each to a Python float for the
callbacks (`pythonify_logs`, every batch); the per-output cost on the host
(~15 us each for the function's output structure alone) was a fifth of the
plain step at T = 8 (benchmarks/weighting_speed.py, issue #15). Here the
step packs its float32 logs into one vector inside the graph, and the host
reads it with one copy into a dict of NumPy values, the same keys in the same
order. The same module builds the function `fit` calls per batch: at the
defaults it is one `tf.function` per step instead of Keras's two (see
`make_function`).

Logs that are not float32 tensors of a static shape (a custom `train_step`
returning other things) go through Keras's path unchanged. Under
MultiWorkerMirroredStrategy `keras_fixes.step_function` packs the logs
itself (for its one all-reduce); under other strategies Keras's "mean"
over replicas is element-wise, so the packed vector reduces like the logs.

Example:
>>> import numpy as np, tensorflow as tf
>>> packed, specs = pack({"loss": tf.constant(0.5), "v": tf.constant([1.0, 2.0])})
>>> logs = unpack(packed.numpy(), specs)
>>> float(logs["loss"]), logs["v"].tolist()
(0.5, [1.0, 2.0])
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

#: (key, shape) of each packed log, in the step's order
Specs = list[tuple[str, tuple[int, ...]]]


def packable(logs: Any) -> bool:
    """Whether `logs` is a dict of float32 tensors with static shapes."""
    return isinstance(logs, dict) and all(
        isinstance(v, tf.Tensor) and v.dtype == tf.float32 and v.shape.is_fully_defined()
        for v in logs.values()
    )


def pack(logs: dict[str, Any]) -> tuple[Any, Specs]:
    """float32 logs -> one vector and the (key, shape) to unpack it."""
    specs = [(key, tuple(value.shape.as_list())) for key, value in logs.items()]
    parts = [tf.reshape(value, [-1]) for value in logs.values()]
    return (tf.concat(parts, axis=0) if parts else tf.zeros([0])), specs


def unpack(flat: np.ndarray, specs: Specs) -> dict[str, Any]:
    """The host side of `pack`: a dict of NumPy float32 scalars and arrays."""
    logs, offset = {}, 0
    for key, shape in specs:
        size = math.prod(shape)  # np.prod costs ~3 us a call, 33 calls a step at T = 8
        value = flat[offset : offset + size]
        logs[key] = value[0] if shape == () else value.reshape(shape)
        offset += size
    return logs


def make_function(
    model: Any, step_function: Callable[[Any], Any], make: Callable[[Any], Any]
) -> Callable[[Any], Any]:
    """The train/test function `fit` and `evaluate` call, over a step whose
    logs are packed.

    Without a strategy, at `steps_per_execution=1` and not eagerly (the
    library's default), it is one `tf.function` that takes the next batch as
    an optional, runs the step when there is one, and returns the packed logs
    with a last entry saying whether it ran (0 at the end of the data, which
    becomes `StopIteration`). Keras's own function nests the step's
    `tf.function` in another and reads its result through two more eager
    ops; at ~2 ms per step those cost a tenth (benchmarks/weighting_speed.py,
    issue #15). The function is called through its concrete function, which
    skips the per-call signature lookup. Every other case (a strategy,
    `steps_per_execution > 1`, Python iterators such as `train_on_batch`'s,
    eager models, logs that cannot be packed) uses Keras's `_make_function`
    (`make`), with the logs packed when they can be.

    Args:
        model: the model.
        step_function: `model.train_step` or `model.test_step`.
        make: Keras's `TensorFlowTrainer._make_function`, bound.
    """
    if model.run_eagerly:
        return make(step_function)
    # Set while tracing: the specs of the packed logs, None when not packed.
    traced: dict[str, Any] = {"specs": None}

    def packed_step(data: Any) -> Any:
        logs = step_function(data)
        if not packable(logs):
            traced["specs"] = None
            return logs
        vector, traced["specs"] = pack(logs)
        return vector

    keras_function = make(packed_step)

    def keras_path(iterator: Any) -> Any:
        outputs = keras_function(iterator)
        specs = traced["specs"]
        return outputs if specs is None else unpack(outputs.numpy(), specs)

    if not _direct(model):
        return keras_path
    return _DirectFunction(model, step_function, keras_path)


def _direct(model: Any) -> bool:
    return (
        model.steps_per_execution == 1
        and not tf.distribute.has_strategy()
        and getattr(model, "_distribute_strategy", None) is None
    )


class _DirectFunction:
    """`make_function`'s one-`tf.function` path (see there)."""

    def __init__(self, model: Any, step_function: Callable[[Any], Any], fallback: Any) -> None:
        # As Keras's function: Optional inputs become None, no autograph.
        step = tf.autograph.experimental.do_not_convert(model._autoconvert_optionals(step_function))
        if model.jit_compile:
            step = tf.function(step, jit_compile=True, reduce_retracing=True)
        self.step = step
        self.fallback = fallback
        self.specs: Specs | None = None
        self.function = tf.function(
            tf.autograph.experimental.do_not_convert(self._on_iterator), reduce_retracing=True
        )
        # The last iterator's concrete function (weakly held: not kept alive).
        self.last: tuple[Any, Any] | None = None

    def _on_iterator(self, iterator: Any) -> Any:
        optional = iterator.get_next_as_optional()

        def run() -> Any:
            logs = self.step(optional.get_value())
            if not packable(logs):
                raise _NotPackable
            vector, self.specs = pack(logs)
            return tf.concat([vector, tf.ones([1])], axis=0)

        def empty() -> Any:
            # Traced after `run`, so the specs give the packed size.
            return tf.zeros([sum(math.prod(shape) for _, shape in self.specs or []) + 1])

        return tf.cond(optional.has_value(), run, empty)

    def _concrete(self, iterator: Any) -> Any:
        if self.last is not None and self.last[0]() is iterator:
            return self.last[1]
        concrete = self.function.get_concrete_function(iterator)
        self.last = (weakref.ref(iterator), concrete)
        return concrete

    def __call__(self, iterator: Any) -> Any:
        if self.function is None or not isinstance(iterator, tf.data.Iterator):
            return self.fallback(iterator)
        try:
            flat = self._concrete(iterator)(iterator).numpy()
        except _NotPackable:
            # Other logs than float32 tensors of static shapes: Keras's path.
            self.function = None
            return self.fallback(iterator)
        if flat[-1] == 0.0:
            raise StopIteration
        return unpack(flat, self.specs or [])


class _NotPackable(Exception):
    """Raised while tracing a step whose logs `pack` cannot take."""
