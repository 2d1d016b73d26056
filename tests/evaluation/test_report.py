"""report values equal direct numpy computations; unlabelled rows are ignored."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import mtl_keras as mk
from mtl_keras.evaluation import bio_spans, entity_f1, report, roc_auc, task_metrics


def _model_and_data(n: int = 120):
    keras.utils.set_random_seed(0)
    tasks = [
        mk.Binary("click"),
        mk.Regression("dwell"),
        mk.Multiclass("kind", num_classes=3),
    ]
    model = mk.builders.shared_bottom(keras.Input((6,)), tasks, trunk_units=(8,), tower_units=())
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, 6)).astype("float32")
    click = (x[:, 0] > 0).astype("float32")
    click[:10] = np.nan  # unlabelled
    click[10:15] = -1.0  # unlabelled
    dwell = x[:, 1].copy()
    dwell[-7:] = np.nan
    kind = rng.integers(0, 3, size=n).astype("int32")
    kind[20:30] = -1
    return model, x, {"click": click, "dwell": dwell, "kind": kind}


def test_report_matches_numpy():
    model, x, y = _model_and_data()
    table = report(model, (x, y))
    pred = model.predict(x, verbose=0)

    keep = ~np.isnan(y["click"]) & (y["click"] >= 0)
    t, p = y["click"][keep], pred["click"][keep, 0]
    hard = (p >= 0.5).astype(float)
    # AUC by brute force over all positive/negative pairs.
    pos, neg = p[t == 1], p[t == 0]
    pairs = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    row = table.loc["click"]
    assert row["rows"] == keep.sum() == 105
    assert row["auc"] == pytest.approx(pairs.mean())
    assert row["accuracy"] == pytest.approx(np.mean(hard == t))
    tp = np.sum((hard == 1) & (t == 1))
    prec, rec = tp / np.sum(hard == 1), tp / np.sum(t == 1)
    assert row["precision_1"] == pytest.approx(prec)
    assert row["recall_1"] == pytest.approx(rec)
    assert row["f1_1"] == pytest.approx(2 * prec * rec / (prec + rec))

    keep = ~np.isnan(y["dwell"])
    t, p = y["dwell"][keep], pred["dwell"][keep, 0]
    row = table.loc["dwell"]
    assert row["mae"] == pytest.approx(np.mean(np.abs(p - t)), rel=1e-6)
    assert row["rmse"] == pytest.approx(np.sqrt(np.mean((p - t) ** 2)), rel=1e-6)
    r2 = 1 - np.sum((p - t) ** 2) / np.sum((t - t.mean()) ** 2)
    assert row["r2"] == pytest.approx(r2, rel=1e-6)
    assert np.isnan(row["auc"])  # not a classification task

    keep = y["kind"] >= 0
    t, p = y["kind"][keep], pred["kind"][keep].argmax(1)
    row = table.loc["kind"]
    assert row["rows"] == 110
    assert row["accuracy"] == pytest.approx(np.mean(t == p))
    for c in range(3):
        tp = np.sum((p == c) & (t == c))
        assert row[f"recall_{c}"] == pytest.approx(tp / np.sum(t == c))
    ovr = np.mean([roc_auc(t == c, pred["kind"][keep, c]) for c in range(3)])
    assert row["auc"] == pytest.approx(ovr)


def test_report_from_dataset_matches_arrays():
    model, x, y = _model_and_data()
    ds = mk.data.from_arrays(x, y, batch_size=32)
    a, b = report(model, (x, y)), report(model, ds)
    np.testing.assert_allclose(
        a.drop(columns="type").to_numpy(float), b.drop(columns="type").to_numpy(float), rtol=1e-5
    )


def test_tagging_metrics():
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    task = mk.Tagging("ner", num_tags=5)
    labels = np.array([[1, 2, 0, 3, -1, -1], [0, 3, 4, 0, 1, -1]])
    ids = np.array([[1, 2, 0, 0, 3, 3], [0, 3, 4, 0, 2, 1]])
    probs = np.eye(5)[ids]
    out = task_metrics(task, labels, probs, tag_names=names)
    keep = labels >= 0
    assert out["rows"] == 9
    assert out["token_accuracy"] == pytest.approx(np.mean(labels[keep] == ids[keep]))
    # true spans: PER(0,2), LOC(3,4) | LOC(1,3), PER(4,5); predicted (padding dropped):
    # PER(0,2) | LOC(1,3), PER(4,5) (an I-PER after O starts an entity) -> 3 hits of 3 pred.
    assert out["entity_precision"] == pytest.approx(1.0)
    assert out["entity_recall"] == pytest.approx(3 / 4)
    assert out["entity_f1"] == pytest.approx(2 * 0.75 / 1.75)
    assert bio_spans(["I-PER", "I-LOC"]) == {(0, 1, "PER"), (1, 2, "LOC")}
    assert entity_f1(labels, labels, names)["entity_f1"] == 1.0
