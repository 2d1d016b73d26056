"""Per-task explanations: feature attributions, importance tables, views.

Example:
>>> from mtl_keras import explain
>>> attr = explain.integrated_gradients(model, x_rows)
>>> table = explain.importance_table(attr)            # feature x task
>>> explain.plot_importance(table)
"""

from mtl_keras.explain.attributions import Attributions, integrated_gradients
from mtl_keras.explain.importance import (
    importance_table,
    permutation_importance,
    shared_features,
)

__all__ = [
    "Attributions",
    "importance_table",
    "integrated_gradients",
    "permutation_importance",
    "shared_features",
]
