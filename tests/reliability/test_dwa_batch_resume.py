"""DWA closes epochs through `fit`'s epoch hook, not metric resets (issue
#13, item 14): a resume from a batch-level `BackupAndRestore(save_freq=N)`
backup counts no phantom epoch and keeps its loss history aligned."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import mtl_keras as mk


class _Stop(Exception):
    pass


class _StopAt(keras.callbacks.Callback):
    def __init__(self, at: int) -> None:
        super().__init__()
        self.at, self.seen = at, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.at:
            raise _Stop


def _model():
    keras.utils.set_random_seed(0)
    tasks = [mk.Binary("click"), mk.Regression("dwell")]
    model = mk.builders.shared_bottom(keras.Input((4,), name="x"), tasks, trunk_units=(8,))
    model.compile("adam", weighting="dwa", metrics={"click": [], "dwell": []})
    return model


def test_batch_level_resume_counts_no_phantom_epoch(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = {"click": (x[:, 0] > 0).astype("float32"), "dwell": x[:, 1].astype("float32")}
    fit = dict(batch_size=16, epochs=3, shuffle=False, verbose=0)  # 4 batches per epoch
    reference = _model()
    reference.fit(x, y, **fit)
    backup = str(tmp_path / "backup")
    interrupted = _model()
    with pytest.raises(_Stop):  # stops after batch 6 (mid-epoch 1), backed up every 2
        interrupted.fit(
            x,
            y,
            callbacks=[keras.callbacks.BackupAndRestore(backup, save_freq=2), _StopAt(6)],
            **fit,
        )
    resumed = _model()
    resumed.fit(x, y, callbacks=[keras.callbacks.BackupAndRestore(backup, save_freq=2)], **fit)
    dwa, ref = resumed.weighting, reference.weighting
    assert float(np.asarray(dwa.epochs_seen)) == float(np.asarray(ref.epochs_seen)) == 3.0
    # The history holds real epoch means (both epochs closed after the resume).
    assert np.all(np.asarray(dwa.prev_losses) > 0) and np.all(np.asarray(dwa.prev2_losses) > 0)
    np.testing.assert_allclose(dwa.loss_counts, 0.0)
