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


def test_rep_grad_aggregators_run_without_xla_but_with_an_xla_solver_on_cpu(monkeypatch):
    monkeypatch.setattr(cd, "_accelerator", lambda: False)
    upgrad = get("upgrad")
    upgrad.rep_grad = True
    assert cd.compile_defaults(upgrad, {})["jit_compile"] is False
    assert upgrad.jit_solver
    # Explicit jit_compile, an all-XLA exception, full Jacobian: no solver cluster.
    assert cd.compile_defaults(upgrad, {"jit_compile": True}) == {
        "jit_compile": True, "steps_per_execution": cd.DEFAULT_STEPS_PER_EXECUTION
    }  # fmt: skip
    assert not upgrad.jit_solver
    cagrad = get("cagrad")
    cagrad.rep_grad = True
    monkeypatch.setattr(cd, "XLA_STEP_ON_CPU", frozenset({"CAGrad"}))
    assert "jit_compile" not in cd.compile_defaults(cagrad, {}) and not cagrad.jit_solver
    assert "jit_compile" not in cd.compile_defaults(get("mgda"), {})
    monkeypatch.setattr(cd, "_accelerator", lambda: True)
    assert "jit_compile" not in cd.compile_defaults(upgrad, {}) and not upgrad.jit_solver


def _rep_model(jit_compile=None):
    keras.utils.set_random_seed(3)
    model = mk.builders.shared_bottom(
        keras.Input((6,)), [mk.Regression(f"t{i}") for i in range(3)], trunk_units=(16, 8)
    )
    kwargs = {} if jit_compile is None else {"jit_compile": jit_compile}
    model.compile(
        keras.optimizers.SGD(0.05), weighting=mk.weighting.UPGrad(rep_grad=True), **kwargs
    )
    return model


def test_xla_solver_trains_like_the_plain_step(monkeypatch):
    monkeypatch.setattr(cd, "_accelerator", lambda: False)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = {f"t{i}": (x[:, i] - x[:, i + 1]).astype("float32") for i in range(3)}
    default, plain = _rep_model(), _rep_model(jit_compile=False)
    assert default.weighting.jit_solver and not plain.weighting.jit_solver
    for model in (default, plain):
        model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
    for a, b in zip(default.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert not np.allclose(default.get_weights()[0], _rep_model().get_weights()[0])  # it trained
