"""Sequence-labelling metrics: token accuracy and entity F1 over BIO spans."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def bio_spans(tags: Sequence[str]) -> set[tuple[int, int, str]]:
    """Entity spans `(start, end_exclusive, type)` of one BIO-tagged sequence.

    conlleval convention: an `I-X` that does not continue an `X` entity starts
    a new one, and any tag other than `B-`/`I-` (e.g. `O`, `<pad>`) ends it.

    Example:
    >>> sorted(bio_spans(["B-PER", "I-PER", "O", "I-LOC", "B-LOC"]))
    [(0, 2, 'PER'), (3, 4, 'LOC'), (4, 5, 'LOC')]
    """
    spans: set[tuple[int, int, str]] = set()
    start, kind = None, None
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, label = tag.partition("-")
        continues = prefix == "I" and kind == label and start is not None
        if start is not None and not continues:
            spans.add((start, i, kind))
            start, kind = None, None
        if prefix in ("B", "I") and label and not continues:
            start, kind = i, label
    return spans


def entity_f1(
    labels: np.ndarray, predictions: np.ndarray, tag_names: Sequence[str]
) -> dict[str, float]:
    """Exact-match entity precision, recall and F1 (micro over all types).

    Args:
        labels: int tag ids `(n, seq_len)`; negative ids are padding. Only the
            labelled prefix positions are read: padded tokens are dropped
            before spans are extracted.
        predictions: predicted int tag ids `(n, seq_len)` (argmax of the head).
        tag_names: id -> tag string, e.g. `("O", "B-PER", "I-PER")`.

    Example:
    >>> names = ["O", "B-X", "I-X"]
    >>> entity_f1(np.array([[1, 2, 0]]), np.array([[1, 2, 1]]), names)["entity_f1"]
    0.6666666666666666
    """
    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    n_true = n_pred = n_hit = 0
    for y_row, p_row in zip(labels, predictions):
        keep = (y_row >= 0) & (y_row < len(tag_names))
        true = bio_spans([tag_names[i] for i in y_row[keep]])
        pred = bio_spans([tag_names[int(i)] for i in p_row[keep]])
        n_true, n_pred, n_hit = n_true + len(true), n_pred + len(pred), n_hit + len(true & pred)
    precision = n_hit / n_pred if n_pred else 0.0
    recall = n_hit / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"entity_precision": precision, "entity_recall": recall, "entity_f1": f1}


def token_accuracy(labels: np.ndarray, predictions: np.ndarray, pad_label: int = -1) -> float:
    """Accuracy over labelled tokens (negative ids and `pad_label` are skipped).

    Example:
    >>> token_accuracy(np.array([[0, 1, -1]]), np.array([[0, 0, 1]]))
    0.5
    """
    labels = np.asarray(labels)
    keep = (labels >= 0) & (labels != pad_label)
    if not keep.any():
        return float("nan")
    return float(np.mean(labels[keep] == np.asarray(predictions)[keep]))
