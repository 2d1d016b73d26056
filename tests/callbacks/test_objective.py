"""MultiTaskObjective / MultiTaskEarlyStopping: a combined key Keras callbacks can monitor."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from _support import toy_data, toy_model

from mtl_keras.callbacks import MultiTaskEarlyStopping, MultiTaskObjective


def test_normalized_loss_in_history_and_early_stopping(tmp_path):
    model = toy_model()
    x, y = toy_data(128)
    xv, yv = toy_data(64, seed=1)
    ckpt = keras.callbacks.ModelCheckpoint(
        str(tmp_path / "best.keras"), monitor="val_mtl_objective", mode="min", save_best_only=True
    )
    stop = keras.callbacks.EarlyStopping("val_mtl_objective", mode="min", patience=1)
    h = model.fit(
        x, y, validation_data=(xv, yv), epochs=3, batch_size=32, verbose=0,
        callbacks=[MultiTaskObjective(), stop, ckpt],
    )  # fmt: skip
    h = h.history
    expected = [
        (h["val_click_loss"][e] / h["val_click_loss"][0] + h["val_dwell_loss"][e] / h["val_dwell_loss"][0]) / 2
        for e in range(len(h["loss"]))
    ]  # fmt: skip
    np.testing.assert_allclose(h["val_mtl_objective"], expected, rtol=1e-6)
    assert h["val_mtl_objective"][0] == pytest.approx(1.0)
    assert (tmp_path / "best.keras").exists()


def test_delta_m_mode_and_multitask_early_stopping():
    model = toy_model()
    x, y = toy_data(128)
    xv, yv = toy_data(64, seed=1)
    base = {"click": {"accuracy": 0.5}, "dwell": {"mae": 2.0}}
    objective = MultiTaskObjective("delta_m", baselines=base)
    stop = MultiTaskEarlyStopping(objective, patience=0, min_delta=1e9)  # stops after 2 epochs
    h = model.fit(
        x, y, validation_data=(xv, yv), epochs=5, batch_size=32, verbose=0, callbacks=[stop]
    ).history
    assert len(h["loss"]) == 2
    acc, mae = np.array(h["val_click_accuracy"]), np.array(h["val_dwell_mae"])
    expected = -((acc - 0.5) / 0.5 * 100 + (2.0 - mae) / 2.0 * 100) / 2
    np.testing.assert_allclose(h["val_mtl_objective"], expected, rtol=1e-6)


def test_errors():
    with pytest.raises(ValueError, match="baselines"):
        MultiTaskObjective("delta_m")
    with pytest.raises(ValueError, match="mode"):
        MultiTaskObjective("sum")
    with pytest.raises(ValueError, match="sets `monitor`"):
        MultiTaskEarlyStopping(monitor="val_loss")
    model = toy_model()
    x, y = toy_data(64)
    with pytest.raises(ValueError, match="validation_data"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[MultiTaskObjective()])
