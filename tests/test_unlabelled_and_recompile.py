"""Unlabelled tasks log NaN and freeze strategy state; recompiling replaces the
strategy cleanly; static weights meet only strategies that apply them."""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest

import mtl_keras as mk


def _data(n: int = 128, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = {
        "click": (x[:, 0] > 0).astype("float32"),
        "dwell": (x[:, 1] - x[:, 2]).astype("float32"),
        "spend": (x[:, 3] + x[:, 4]).astype("float32"),
    }
    return x, y


def _model(weighting: object = "static", tasks: list | None = None) -> mk.MultiTaskModel:
    keras.utils.set_random_seed(0)
    tasks = tasks or [mk.Binary("click"), mk.Regression("dwell"), mk.Regression("spend")]
    model = mk.builders.shared_bottom(keras.Input((6,)), tasks, trunk_units=(8,), tower_units=(4,))
    model.compile(keras.optimizers.Adam(0.05), weighting=weighting)
    return model


def _without_spend(y: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {**y, "spend": np.full_like(y["spend"], np.nan)}


def test_task_without_labels_logs_nan_not_zero() -> None:
    x, y = _data()
    model = _model()
    history = model.fit(
        x,
        _without_spend(y),
        epochs=2,
        batch_size=32,
        verbose=0,
        validation_data=(x, _without_spend(y)),
    ).history
    for key in ("spend_loss", "spend_mae", "val_spend_loss", "val_spend_mae"):
        assert np.isnan(history[key]).all(), key
    for key in ("click_loss", "dwell_loss", "dwell_mae", "val_dwell_loss", "loss"):
        assert np.isfinite(history[key]).all(), key
    logs = model.evaluate(x, _without_spend(y), verbose=0, return_dict=True)
    assert np.isnan(logs["spend_loss"]) and np.isfinite(logs["dwell_loss"])


def test_uncertainty_freezes_the_log_variance_of_an_unlabelled_task() -> None:
    x, y = _data()
    model = _model("uncertainty")
    model.fit(x, _without_spend(y), epochs=4, batch_size=32, verbose=0)
    log_vars = keras.ops.convert_to_numpy(model.weighting.log_vars)
    assert log_vars[2] == 0.0  # untouched
    assert abs(log_vars[1]) > 1e-3  # labelled tasks do learn theirs


def test_dwa_does_not_favour_an_unlabelled_task() -> None:
    x, y = _data()
    model = _model("dwa")
    history = model.fit(x, _without_spend(y), epochs=4, batch_size=32, verbose=0).history
    weights = keras.ops.convert_to_numpy(model.weighting.dwa_weights())
    assert weights[2] == pytest.approx(1.0)
    assert weights[:2].sum() == pytest.approx(2.0, rel=1e-5)
    # The epoch hook closed exactly one epoch per fit epoch.
    assert float(model.weighting.epochs_seen) == 4.0
    assert history["spend_weight"][-1] <= max(
        history["click_weight"][-1], history["dwell_weight"][-1]
    )


def test_recompile_drops_the_old_strategy(tmp_path) -> None:
    x, y = _data()
    model = _model("uncertainty")
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    model.compile(keras.optimizers.Adam(0.01), weighting="static")
    names = [v.path for v in model.trainable_variables]
    assert not any("log_vars" in n for n in names)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = keras.models.load_model(path)
    assert len(loaded.optimizer.variables) == len(model.optimizer.variables)


def test_weights_are_training_only_logs() -> None:
    x, y = _data()
    model = _model("uncertainty")
    history = model.fit(x, y, epochs=1, batch_size=64, verbose=0, validation_data=(x, y)).history
    assert "dwell_weight" in history
    assert not any(k.startswith("val_") and k.endswith("_weight") for k in history)
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert not any(k.endswith("_weight") for k in logs)


def test_aggregator_loss_is_the_plain_sum_in_training_and_validation() -> None:
    x, y = _data()
    model = _model("mgda")
    history = model.fit(x, y, epochs=1, batch_size=64, verbose=0, validation_data=(x, y)).history
    task_sum = sum(history[f"{t}_loss"][-1] for t in ("click", "dwell", "spend"))
    assert history["loss"][-1] == pytest.approx(task_sum, rel=1e-5)
    val_sum = sum(history[f"val_{t}_loss"][-1] for t in ("click", "dwell", "spend"))
    assert history["val_loss"][-1] == pytest.approx(val_sum, rel=1e-5)


@pytest.mark.parametrize("weighting", ["famo", "geometric_mean", "gradnorm", "upgrad"])
def test_strategies_that_ignore_static_weights_refuse_them(weighting: str) -> None:
    model = _model()
    with pytest.raises(ValueError, match="does not apply static task weights.*'dwell': 2.0"):
        model.compile("adam", weighting=weighting, loss_weights={"dwell": 2.0})
    model.compile("adam", weighting=weighting)  # default weights are fine


def test_static_weights_reach_strategies_that_apply_them() -> None:
    x, y = _data(64)
    model = _model()
    model.compile("adam", weighting="static", loss_weights={"dwell": 2.0})
    history = model.fit(x, y, epochs=1, batch_size=64, verbose=0).history
    assert history["dwell_weight"][-1] == pytest.approx(2.0)
    assert history["click_weight"][-1] == pytest.approx(1.0)


def test_an_epoch_without_batches_logs_nan_not_zero():
    # A generator's data runs out after the first epoch: the second trains on
    # nothing, so its loss and task weights are "no data" (NaN), not 0.0.
    import tensorflow as tf
    from _support import toy_data, toy_model

    x, y = toy_data(64)

    def batches():
        for i in range(4):
            yield x[i * 16 : (i + 1) * 16], {k: v[i * 16 : (i + 1) * 16] for k, v in y.items()}

    spec = tf.TensorSpec((None,), tf.float32)
    ds = tf.data.Dataset.from_generator(
        batches, output_signature=(tf.TensorSpec((None, 8)), {"click": spec, "dwell": spec})
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras: "Your input ran out of data"
        history = toy_model().fit(ds, epochs=2, steps_per_epoch=4, verbose=0).history
    for key, values in history.items():
        assert np.isfinite(values[0]), key
        assert np.isnan(values[1]), key
