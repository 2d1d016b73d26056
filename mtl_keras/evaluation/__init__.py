"""Per-task evaluation, single-task baselines and Δm."""

from mtl_keras.evaluation.baselines import (
    Baselines,
    TrainResult,
    single_task_baselines,
    train_and_evaluate,
)
from mtl_keras.evaluation.delta_m import DEFAULT_HIGHER_IS_BETTER, DeltaM, delta_m
from mtl_keras.evaluation.metrics import binary_report, roc_auc
from mtl_keras.evaluation.report import report, task_metrics
from mtl_keras.evaluation.tagging import bio_spans, entity_f1, token_accuracy

__all__ = [
    "DEFAULT_HIGHER_IS_BETTER",
    "Baselines",
    "DeltaM",
    "TrainResult",
    "binary_report",
    "bio_spans",
    "delta_m",
    "entity_f1",
    "report",
    "roc_auc",
    "single_task_baselines",
    "task_metrics",
    "token_accuracy",
    "train_and_evaluate",
]
