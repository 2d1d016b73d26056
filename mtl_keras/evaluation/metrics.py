"""Exact metrics for reports (Keras's streaming AUC is a thresholded estimate)."""

from __future__ import annotations

import numpy as np


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Exact ROC AUC (Mann-Whitney U with average ranks for ties).

    Rows whose label is NaN or negative (missing) are ignored. Returns NaN
    when only one class is present.
    """
    import pandas as pd

    labels = np.asarray(labels, dtype="float64").reshape(-1)
    scores = np.asarray(scores, dtype="float64").reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(f"roc_auc: {labels.shape[0]} labels but {scores.shape[0]} scores.")
    keep = ~np.isnan(labels) & (labels >= 0)
    labels, scores = labels[keep], scores[keep]
    positives = labels > 0.5
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = pd.Series(scores).rank(method="average").to_numpy()
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def binary_report(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict:
    """AUC, accuracy, label positive rate and predicted positive rate."""
    labels = np.asarray(labels, dtype="float64").reshape(-1)
    scores = np.asarray(scores, dtype="float64").reshape(-1)
    keep = ~np.isnan(labels) & (labels >= 0)
    labels, scores = labels[keep], scores[keep]
    predicted = scores >= threshold
    return {
        "auc": roc_auc(labels, scores),
        "accuracy": float(np.mean(predicted == (labels > 0.5))),
        "positive_rate": float(np.mean(labels > 0.5)),
        "predicted_positive_rate": float(np.mean(predicted)),
        "rows": int(labels.shape[0]),
    }
