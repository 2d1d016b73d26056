"""add_tasks: new heads on a trained trunk."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from _support import toy_data, toy_model

import mtl_keras as mk
from mtl_keras.incremental import shared_representation


def _trained():
    model = toy_model()
    x, y = toy_data(256)
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    return model, x


def test_frozen_trunk_keeps_old_predictions_and_trains_new_task():
    model, x = _trained()
    before = model.predict(x, verbose=0)
    bigger = mk.add_tasks(model, [mk.Regression("spend")], tower_units=(8,))
    assert bigger.task_names == ["click", "dwell", "spend"]
    assert shared_representation(model).shape == (None, 16)
    # Old heads keep weights and predictions at once.
    after_build = bigger.predict(x, verbose=0)
    for n in ("click", "dwell"):
        np.testing.assert_allclose(after_build[n], before[n], rtol=1e-6)
    # Only the new tower and head are trainable.
    shared, per_task, _ = bigger.variable_groups()
    assert not shared and not per_task[0] and not per_task[1] and per_task[2]
    bigger.compile(keras.optimizers.Adam(0.02))
    target = (x[:, 3] - x[:, 4]).astype("float32")
    loss0 = bigger.evaluate(x, {"spend": target}, verbose=0, return_dict=True)["spend_loss"]
    history = bigger.fit(x, {"spend": target}, epochs=8, batch_size=64, verbose=0)
    assert history.history["spend_loss"][-1] < 0.5 * loss0
    after = bigger.predict(x, verbose=0)
    for n in ("click", "dwell"):
        np.testing.assert_allclose(after[n], before[n], rtol=1e-6)


def test_unfrozen_trunk_is_trainable_and_errors():
    model, _ = _trained()
    bigger = mk.add_tasks(
        model, [mk.Binary("buy")], freeze_shared=False, tower_units=(), freeze_old_heads=False
    )
    shared, per_task, _ = bigger.variable_groups()
    assert shared and all(per_task)
    with pytest.raises(ValueError, match="already exist"):
        mk.add_tasks(model, [mk.Binary("click")])
    with pytest.raises(ValueError, match="no layer named"):
        mk.add_tasks(model, [mk.Binary("x")], representation="nope")
    # An explicit representation layer.
    again = mk.add_tasks(model, [mk.Binary("y")], representation="trunk", tower_units=())
    assert again.task_names[-1] == "y"
