"""Every loss-weighting strategy of issue #3 trains end to end and saves its state."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from _support import toy_data, toy_model

from mtl_keras import weighting

NAMES = ["dwa", "rlw", "famo", "gradnorm", "imtl_l", "geometric_mean"]

# The variables whose values must survive a `.keras` round trip.
STATE = {
    "dwa": ["prev_losses", "prev2_losses", "epochs_seen"],
    "rlw": ["seed_generator.state"],
    "famo": ["logits", "prev_log_losses", "adam_m", "adam_v", "logit_steps"],
    "gradnorm": ["task_weights", "initial_losses"],
    "imtl_l": ["log_scales"],
    "geometric_mean": [],
}


def _state(model: keras.Model, attr: str) -> np.ndarray:
    obj = model.weighting
    for part in attr.split("."):
        obj = getattr(obj, part)
    return np.asarray(obj)


def _fit(name: str, jit: bool) -> keras.Model:
    x, y = toy_data(64)
    # No task metrics: they are not under test and dominate XLA compile time.
    model = toy_model(weighting=name, jit_compile=jit, metrics={"click": [], "dwell": []})
    assert isinstance(model.weighting, weighting.STRATEGIES[name])
    start = {a: _state(model, a).copy() for a in STATE[name]}
    history = model.fit(x, y, batch_size=32, epochs=3, verbose=0)
    for key in ("loss", "click_loss", "dwell_loss", "click_weight", "dwell_weight"):
        assert key in history.history, key
        assert np.all(np.isfinite(history.history[key])), (key, history.history[key])
    assert all(w > 0 for w in history.history["click_weight"])
    for attr, value in start.items():  # training moved every piece of state
        assert not np.array_equal(value, _state(model, attr)), attr
    return model


@pytest.mark.parametrize("name", NAMES)
def test_fit_jit(name: str) -> None:
    _fit(name, jit=True)


@pytest.mark.parametrize("name", NAMES)
def test_fit_save_load(name: str, tmp_path) -> None:
    model = _fit(name, jit=False)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.weighting) is type(model.weighting)
    assert loaded.weighting.get_config() == model.weighting.get_config()
    for attr in STATE[name]:
        np.testing.assert_allclose(_state(loaded, attr), _state(model, attr), err_msg=attr)
    # Evaluation-mode combination agrees and leaves the state alone.
    losses = tf.constant([0.7, 2.5])
    before = [np.asarray(v).copy() for v in model.weighting.variables]
    total, weights = model.weighting.combine(losses, training=False)
    total2, weights2 = loaded.weighting.combine(losses, training=False)
    np.testing.assert_allclose(total, total2, rtol=1e-6)
    np.testing.assert_allclose(weights, weights2, rtol=1e-6)
    for v0, v1 in zip(before, model.weighting.variables):
        np.testing.assert_array_equal(v0, np.asarray(v1))
