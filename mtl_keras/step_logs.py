"""A train/test step's logs as one tensor out of the graph, unpacked on the host.

A `MultiTaskModel` logs a loss, a weight and its metrics per task: at 8
regression tasks, 33 scalars per step. Keras returns each as its own output
of the step function and then converts each to a Python float for the
callbacks (`pythonify_logs`, every batch); the per-output cost on the host
(~15 us each for the function's output structure alone) was a fifth of the
plain step at T = 8 (benchmarks/weighting_speed.py, issue #15). Here the
step packs its float32 logs into one vector inside the graph, and the host
reads it with one copy into a dict of NumPy values, the same keys in the same
order.

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
        size = int(np.prod(shape, dtype=np.int64))
        value = flat[offset : offset + size]
        logs[key] = value[0] if shape == () else value.reshape(shape)
        offset += size
    return logs


def make_function(
    model: Any, step_function: Callable[[Any], Any], make: Callable[[Any], Any]
) -> Callable[[Any], Any]:
    """Keras's `_make_function` (`make`) over a step whose logs are packed.

    Args:
        model: the model (eager models keep Keras's own path).
        step_function: `model.train_step` or `model.test_step`.
        make: Keras's `TensorFlowTrainer._make_function`, bound.
    """
    if model.run_eagerly:
        return make(step_function)
    # Set while tracing: the specs of the packed logs, None when not packed.
    traced: dict[str, Specs | None] = {"specs": None}

    def packed_step(data: Any) -> Any:
        logs = step_function(data)
        if not packable(logs):
            traced["specs"] = None
            return logs
        vector, traced["specs"] = pack(logs)
        return vector

    function = make(packed_step)

    def unpacking_function(iterator: Any) -> Any:
        outputs = function(iterator)
        specs = traced["specs"]
        return outputs if specs is None else unpack(outputs.numpy(), specs)

    return unpacking_function
