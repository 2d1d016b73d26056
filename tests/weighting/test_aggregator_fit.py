"""Every gradient aggregator of issue #3 trains the toy model and survives `.keras`."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from _support import toy_data, toy_model

from mtl_keras import weighting

NAMES = [
    "pcgrad", "mgda", "cagrad", "nash_mtl", "imtl_g", "upgrad",
    "aligned_mtl", "graddrop", "gradvac", "dualproj", "config",
]  # fmt: skip

# Non-default hyper-parameters, so that the round trip has something to keep.
PARAMS = {
    "pcgrad": {"seed": 1},
    "mgda": {"max_iters": 50},
    "cagrad": {"c": 0.4, "max_iters": 100},
    "nash_mtl": {"update_weights_every": 2},
    "graddrop": {"seed": 2, "leak": [0.1, 0.0]},
    "gradvac": {"beta": 0.3, "seed": 3},
    "upgrad": {"reg_eps": 1e-5},
}

# Keras variables that must survive the round trip.
STATE = {"nash_mtl": ["alpha", "step"], "gradvac": ["targets"]}


def _total_loss(model: keras.Model, x: np.ndarray, y: dict) -> float:
    logs = model.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    return logs["click_loss"] + logs["dwell_loss"]


# The XLA variants compile one step per aggregator (~5-8 s CPU each): slow tier
# (CI); the fast tier keeps XLA through test_representation and test_gradnorm.
@pytest.mark.parametrize(
    "jit", [pytest.param(True, id="xla", marks=pytest.mark.slow), pytest.param(False, id="graph")]
)
@pytest.mark.parametrize("name", NAMES)
def test_fit_and_save(name: str, jit: bool, tmp_path) -> None:
    x, y = toy_data(128)
    strategy = weighting.STRATEGIES[name](**PARAMS.get(name, {}))
    model = toy_model(weighting=strategy, jit_compile=jit)
    before = _total_loss(model, x, y)
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    for key in ("loss", "click_loss", "dwell_loss", "click_weight", "dwell_weight"):
        assert np.all(np.isfinite(history.history[key])), (key, history.history[key])
    assert _total_loss(model, x, y) < before
    if jit:
        return  # the round trip does not depend on XLA
    for attr in STATE.get(name, []):
        assert np.any(np.asarray(getattr(model.weighting, attr)) != 0), attr
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.weighting) is type(strategy)
    assert loaded.weighting.get_config() == model.weighting.get_config()
    for key, value in PARAMS.get(name, {}).items():
        assert loaded.weighting.get_config()[key] == value
    for v0, v1 in zip(model.weighting.variables, loaded.weighting.variables):
        np.testing.assert_array_equal(np.asarray(v0), np.asarray(v1), err_msg=v0.path)
    assert len(model.weighting.variables) == len(loaded.weighting.variables)
