"""Compression of multi-task models: magnitude pruning (Keras-native).

Example (`model`, `x`, `y`: a small two-task model and 16 rows, see conftest.py):
>>> from mtl_keras import compress
>>> schedule = compress.PolynomialDecay(0.8, begin_step=0, end_step=4, frequency=1)
>>> model.compile(compress.pruning_optimizer(model, "adam", schedule,
...                                          shared_sparsity=0.5, task_sparsity=0.8))
>>> h = model.fit(x, y, batch_size=4, epochs=2, callbacks=[compress.PruningCallback()],
...               verbose=0)
>>> round(h.history["sparsity_shared"][-1], 1), round(h.history["sparsity_click"][-1], 1)
(0.5, 0.8)
>>> compress.strip_pruning(model) is model
True
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
