"""`MultiTaskModel.compile` defaults for steps_per_execution and jit_compile."""

from __future__ import annotations

import keras
import numpy as np

import mtl_keras as mk
from mtl_keras import compile_defaults as cd
from mtl_keras.weighting import get


def _model(**compile_kwargs):
    model = mk.builders.shared_bottom(
        keras.Input((4,)), [mk.Binary("click"), mk.Regression("dwell")], trunk_units=(8,)
    )
    model.compile("adam", **compile_kwargs)
    return model


def test_defaults_fill_only_unset_arguments(monkeypatch):
    monkeypatch.setattr(cd, "_accelerator", lambda: False)
    static = cd.compile_defaults(get("static"), {})
    assert static == {"steps_per_execution": cd.DEFAULT_STEPS_PER_EXECUTION, "jit_compile": False}
    explicit = {"steps_per_execution": 3, "jit_compile": True}
    assert cd.compile_defaults(get("static"), explicit) == explicit
    # Gradient aggregators keep Keras's "auto" jit (their solvers fuse well).
    assert "jit_compile" not in cd.compile_defaults(get("pcgrad"), {})
    assert cd.compile_defaults(get("static"), {"run_eagerly": True}) == {"run_eagerly": True}
    monkeypatch.setattr(cd, "_accelerator", lambda: True)
    assert "jit_compile" not in cd.compile_defaults(get("static"), {})
    monkeypatch.setattr(cd, "_multi_worker", lambda: True)
    assert "steps_per_execution" not in cd.compile_defaults(get("static"), {})


def test_model_uses_defaults_and_saves_only_explicit_ones(tmp_path):
    model = _model()
    assert model.steps_per_execution == cd.DEFAULT_STEPS_PER_EXECUTION
    x = np.random.default_rng(0).normal(size=(100, 4)).astype("float32")
    y = {"click": (x[:, 0] > 0).astype("float32"), "dwell": x[:, 1]}
    history = model.fit(x, y, epochs=2, batch_size=10, verbose=0)
    assert int(model.optimizer.iterations) == 20  # 10 steps per epoch, every one run
    assert len(history.history["loss"]) == 2
    assert "steps_per_execution" not in model._mtl_compile_config
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.steps_per_execution == cd.DEFAULT_STEPS_PER_EXECUTION
    assert _model(steps_per_execution=4).steps_per_execution == 4
