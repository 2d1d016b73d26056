"""Per-task explanations: feature attributions, importance tables, views.

Example (`model`, `x`: a small two-task model and 16 rows, see conftest.py):
>>> import tempfile
>>> from mtl_keras import explain
>>> attr = explain.integrated_gradients(model, x, steps=16)
>>> table = explain.importance_table(attr)            # feature x task
>>> table.shape
(2, 2)
>>> ax = explain.plot_importance(table)
>>> explain.log_importance(table, tempfile.mkdtemp())  # TensorBoard
>>> explain.task_views(model, x)  # gates / attention / fusion: none in shared_bottom
{}
"""

from mtl_keras.explain.attributions import Attributions, integrated_gradients
from mtl_keras.explain.importance import (
    importance_table,
    permutation_importance,
    shared_features,
)
from mtl_keras.explain.plots import plot_importance, plot_metric_drop
from mtl_keras.explain.tensorboard import ImportanceTensorBoard, log_importance
from mtl_keras.explain.views import (
    fusion_weights,
    gate_model,
    gate_utilisation,
    mtan_attention_model,
    register_view,
    task_attention,
    task_views,
)

__all__ = [
    "Attributions",
    "ImportanceTensorBoard",
    "fusion_weights",
    "gate_model",
    "gate_utilisation",
    "importance_table",
    "integrated_gradients",
    "log_importance",
    "mtan_attention_model",
    "permutation_importance",
    "plot_importance",
    "plot_metric_drop",
    "register_view",
    "shared_features",
    "task_attention",
    "task_views",
]
