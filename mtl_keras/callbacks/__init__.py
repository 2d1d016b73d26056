"""Keras callbacks for multi-task training."""

from mtl_keras.callbacks.objective import MultiTaskEarlyStopping, MultiTaskObjective
from mtl_keras.callbacks.task_tensorboard import TaskTensorBoard

__all__ = ["MultiTaskEarlyStopping", "MultiTaskObjective", "TaskTensorBoard"]
