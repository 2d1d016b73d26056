"""Compression of multi-task models: magnitude pruning (Keras-native).

Example:
>>> from mtl_keras import compress
>>> schedule = compress.PolynomialDecay(0.8, begin_step=0, end_step=500, frequency=50)
>>> model.compile(compress.pruning_optimizer(model, "adam", schedule,
...                                          shared_sparsity=0.5, task_sparsity=0.8))
>>> model.fit(x, y, epochs=5, callbacks=[compress.PruningCallback()])
>>> compress.strip_pruning(model)
"""

from mtl_keras.compress.pruning import (
    PruningCallback,
    PruningOptimizer,
    group_sparsity,
    magnitude_mask,
    metric_drop,
    pruning_optimizer,
    sparsity_report,
    strip_pruning,
    variable_groups_by_path,
)
from mtl_keras.compress.schedule import PolynomialDecay

__all__ = [
    "PolynomialDecay",
    "PruningCallback",
    "PruningOptimizer",
    "group_sparsity",
    "magnitude_mask",
    "metric_drop",
    "pruning_optimizer",
    "sparsity_report",
    "strip_pruning",
    "variable_groups_by_path",
]
