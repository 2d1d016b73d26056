"""Per-task evaluation."""

from mtl_keras.evaluation.metrics import binary_report, roc_auc

__all__ = ["binary_report", "roc_auc"]
