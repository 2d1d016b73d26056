"""Non-finite features in `evaluate`, `fit(validation_data=...)` and `predict`
raise `NonFiniteError` naming the feature (issue #13, item 2, follow-up), and
a skipped training batch leaves no trace in a stateful strategy, the
optimizer or BatchNorm's moving statistics."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import mtl_keras as mk
from mtl_keras.contracts import NonFiniteError

from ._models import data, named_model

MODES = {
    "eager": {"run_eagerly": True},
    "graph": {},
    "xla": {"jit_compile": True},
}
#: XLA compiles are slow on CPU: those variants run with the slow tests.
MODE_PARAMS = [
    "eager",
    "graph",
    pytest.param("xla", marks=pytest.mark.slow),
]


def _nan_age(x, rows=(3,)):
    x = {k: v.copy() for k, v in x.items()}
    x["age"][list(rows)] = np.nan
    return x


@pytest.mark.parametrize("mode", MODE_PARAMS)
def test_evaluate_with_nan_feature_raises_naming_it(mode):
    model = named_model(**MODES[mode])
    x, y = data(32)
    with pytest.raises(NonFiniteError, match=r"evaluation batch 0: .*'age' \(1 values\)"):
        model.evaluate(_nan_age(x), y, batch_size=16, verbose=0)
    x[("score")][20] = np.inf
    with pytest.raises(NonFiniteError, match=r"evaluation batch 1: .*'score' \(1 values\)"):
        model.evaluate(x, y, batch_size=16, verbose=0)


@pytest.mark.parametrize("mode", MODE_PARAMS)
def test_validation_data_with_nan_feature_stops_fit(mode):
    model = named_model(**MODES[mode])
    x, y = data(32)
    vx, vy = data(16, seed=1)
    with pytest.raises(NonFiniteError, match=r"evaluation batch 0: .*'age'"):
        model.fit(x, y, validation_data=(_nan_age(vx), vy), batch_size=16, verbose=0)
    # A validation tf.data.Dataset is checked in the step too.
    ds = tf.data.Dataset.from_tensor_slices((_nan_age(vx), vy)).batch(8)
    with pytest.raises(NonFiniteError, match="'age'"):
        model.fit(x, y, validation_data=ds, batch_size=16, verbose=0)


def test_evaluate_in_skip_mode_leaves_the_batch_out_of_the_metrics():
    model = named_model(on_nonfinite="skip")
    x, y = data(32)
    clean = model.evaluate(
        {k: v[16:] for k, v in x.items()},
        {k: v[16:] for k, v in y.items()},
        batch_size=16,
        verbose=0,
        return_dict=True,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logs = model.evaluate(_nan_age(x), y, batch_size=16, verbose=0, return_dict=True)
    assert any("'age'" in str(w.message) and "Skipped" in str(w.message) for w in caught)
    for key, value in clean.items():
        np.testing.assert_allclose(logs[key], value, rtol=1e-6, err_msg=key)


def test_allowed_feature_may_be_nan_in_evaluate_and_predict():
    model = named_model(allow_nonfinite_features=["age"])
    x, y = data(16)
    model.evaluate(_nan_age(x), y, verbose=0)
    model.predict(_nan_age(x), verbose=0)


@pytest.mark.parametrize("mode", ["eager", "graph"])
def test_predict_with_nan_feature_raises_naming_it(mode):
    model = named_model(**MODES[mode])
    x, _ = data(64)
    with pytest.raises(NonFiniteError, match=r"predict batch 1: .*'age' \(1 values\)"):
        model.predict(_nan_age(x, rows=(40,)), batch_size=32, verbose=0)
    ds = tf.data.Dataset.from_tensor_slices(_nan_age(x)).batch(16)
    with pytest.raises(NonFiniteError, match=r"predict batch 0: .*'age'"):
        model.predict(ds, verbose=0)
    with pytest.raises(NonFiniteError, match="'age'"):
        model.predict_on_batch(_nan_age(x))
    # Clean data still predicts, and the guard does not linger.
    out = model.predict(x, batch_size=32, verbose=0)
    assert all(np.isfinite(v).all() for v in out.values())


def test_uncompiled_model_refuses_nan_features_in_predict():
    keras.utils.set_random_seed(0)
    inputs = {"age": keras.Input((), name="age"), "score": keras.Input((), name="score")}
    h = keras.layers.Concatenate()([keras.layers.Reshape((1,))(v) for v in inputs.values()])
    tasks = [mk.Binary("click")]
    model = mk.MultiTaskModel(inputs, {"click": tasks[0].head(h)}, tasks=tasks)
    x, _ = data(8)
    with pytest.raises(NonFiniteError, match="'age'"):
        model.predict(_nan_age(x), verbose=0)


# ------------------------------------------------------- skipped-batch state
STATEFUL = {
    "uncertainty": {},
    "dwa": {"steps_per_epoch": 3},
    "famo": {},
    "gradnorm": {},
    "rlw": {"seed": 1},
    "nash_mtl": {"update_weights_every": 2},
    "gradvac": {"seed": 1},
}


def _state(model):
    """Every variable a step could move: model, strategy, optimizer."""
    values = {f"model:{v.path}": np.array(v) for v in model.variables}
    values.update({f"weighting:{v.path}": np.array(v) for v in model.weighting.variables})
    values.update({f"optimizer:{v.path}": np.array(v) for v in model.optimizer.variables})
    return values


def _shared_bottom(strategy, batchnorm=False, **compile_kwargs):
    keras.utils.set_random_seed(0)
    inputs = {"age": keras.Input((), name="age"), "score": keras.Input((), name="score")}
    h = keras.layers.Concatenate()([keras.layers.Reshape((1,))(v) for v in inputs.values()])
    if batchnorm:
        h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Dense(8, activation="tanh", name="trunk")(h)
    tasks = [mk.Binary("click"), mk.Regression("dwell")]
    model = mk.MultiTaskModel(inputs, {t.name: t.head(h) for t in tasks}, tasks=tasks)
    weighting = mk.weighting.STRATEGIES[strategy](**STATEFUL.get(strategy, {}))
    model.compile(
        keras.optimizers.Adam(1e-2),
        weighting=weighting,
        on_nonfinite="skip",
        metrics={"click": [], "dwell": []},
        **compile_kwargs,
    )
    return model


def _two_tasks(n=16, seed=0):
    x, y = data(n, seed=seed)
    return x, {"click": y["click"], "dwell": y["dwell"]}


@pytest.mark.parametrize("strategy", list(STATEFUL))
def test_skipped_batch_leaves_strategy_and_optimizer_state_unchanged(strategy):
    model = _shared_bottom(strategy)
    x, y = _two_tasks()
    for _ in range(2):  # non-trivial state first (history, moments, caches)
        model.train_on_batch(x, y)
    before = _state(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.train_on_batch(_nan_age(x), y)
    assert any("Skipped" in str(w.message) for w in caught)
    after = _state(model)
    assert sorted(before) == sorted(after)
    for key in before:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    if strategy != "famo":
        return
    # The next clean batch trains as if the skipped one had never come.
    reference = _shared_bottom(strategy)
    for _ in range(3):
        reference.train_on_batch(x, y)
    model.train_on_batch(x, y)
    for a, b in zip(reference.get_weights(), model.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("mode", ["eager", pytest.param("xla", marks=pytest.mark.slow)])
@pytest.mark.parametrize("strategy", ["famo", "uncertainty"])
def test_skipped_batch_state_in_eager_and_xla(strategy, mode):
    model = _shared_bottom(strategy, **MODES[mode])
    x, y = _two_tasks()
    model.train_on_batch(x, y)
    before = _state(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.train_on_batch(_nan_age(x), y)
    for key, value in _state(model).items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


@pytest.mark.parametrize("on_nonfinite", ["skip", "raise"])
def test_batchnorm_statistics_do_not_see_a_refused_batch(on_nonfinite):
    model = _shared_bottom("static", batchnorm=True)
    if on_nonfinite == "raise":
        model.compile("adam", on_nonfinite="raise")
    x, y = _two_tasks()
    model.fit(x, y, batch_size=16, verbose=0)
    before = _state(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model.fit(_nan_age(x), y, batch_size=16, verbose=0)
        except NonFiniteError:
            assert on_nonfinite == "raise"
    after = _state(model)
    moving = [k for k in before if "moving" in k]
    assert moving
    for key in before:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    out = model.predict(x, verbose=0)
    assert all(np.isfinite(v).all() for v in out.values())
