"""BackupAndRestore edge cases on one process (issue #14 part 3): a restore
does not leak into later `fit` calls (Keras's `_initial_epoch`)."""

from __future__ import annotations

import keras
import numpy as np

import mtl_keras as mk
from mtl_keras.distribute import BackupAndRestore


def _model() -> mk.MultiTaskModel:
    keras.utils.set_random_seed(0)
    tasks = [mk.Binary("click"), mk.Regression("dwell")]
    model = mk.builders.shared_bottom(keras.Input((4,), name="x"), tasks, trunk_units=(4,))
    model.compile(keras.optimizers.SGD(0.1), jit_compile=False)
    return model


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    return x, {"click": (x[:, 0] > 0).astype("float32"), "dwell": x[:, 1]}


def test_restored_epoch_does_not_skip_later_fits(tmp_path):
    x, y = _data()
    backup = str(tmp_path / "backup")
    _model().fit(
        x, y, epochs=2, verbose=0, callbacks=[BackupAndRestore(backup, delete_checkpoint=False)]
    )
    # A restarted job: the restore finds training complete (epoch 2 of 2).
    for plain in (False, True):
        model = _model()
        callback = BackupAndRestore(backup, delete_checkpoint=False)
        history = model.fit(x, y, epochs=2, verbose=0, callbacks=[callback])
        assert callback.restored_epoch == 2 and history.history == {}
        assert model._initial_epoch is None
        # Keras would start the next fit at epoch 2 and train 0 epochs of 1.
        before = [w.numpy().copy() for w in model.trainable_weights]
        if plain:  # Keras's own fit: the callback's reset alone
            history = keras.Model.fit(model, x, y, epochs=1, verbose=0)
        else:
            history = model.fit(x, y, epochs=1, verbose=0)
        assert len(history.history["loss"]) == 1
        assert any(
            not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights)
        )


def test_lone_non_chief_evaluate_removes_its_tensorboard_dir(tmp_path, monkeypatch):
    from mtl_keras.distribute import cluster

    private = tmp_path / "worker1_private" / "tb"

    def non_chief_path(path, strategy=None):  # what write_path gives worker 1
        private.parent.mkdir(exist_ok=True)
        return str(private)

    monkeypatch.setattr(cluster, "write_path", non_chief_path)
    x, y = _data()
    model = _model()
    board = mk.callbacks.TaskTensorBoard(str(tmp_path / "chief_tb"))
    model.evaluate(x, y, verbose=0, callbacks=[board])
    assert not private.parent.exists()
    assert not (tmp_path / "chief_tb").exists()
    # Inside fit, validation keeps the directory until the end of training.
    seen = []
    probe = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda e, logs: seen.append(private.exists())
    )
    model.fit(x, y, validation_data=(x, y), epochs=2, verbose=0, callbacks=[board, probe])
    assert seen == [True, True] and not private.parent.exists()
