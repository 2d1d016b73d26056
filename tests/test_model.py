import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from _support import toy_data, toy_model

import mtl_keras as mk


def _single_batch_eval(model, x, y, **kwargs):
    return model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True, **kwargs)


def test_task_loss_is_mean_over_labelled_rows_only():
    x, y = toy_data(64)
    model = toy_model()
    missing = np.zeros(64, bool)
    missing[::3] = True
    y_nan = {"click": np.where(missing, np.nan, y["click"]), "dwell": y["dwell"]}
    with_missing = _single_batch_eval(model, x, y_nan)
    kept = {k: v[~missing] for k, v in y.items()}
    without_rows = _single_batch_eval(model, x[~missing], kept)
    np.testing.assert_allclose(with_missing["click_loss"], without_rows["click_loss"], rtol=1e-6)
    # Metrics skip the unlabelled rows too.
    np.testing.assert_allclose(
        with_missing["click_accuracy"], without_rows["click_accuracy"], rtol=1e-6
    )


def test_explicit_mask_equals_nan_marking():
    x, y = toy_data(64)
    model = toy_model()
    mask = np.ones(64, "float32")
    mask[:20] = 0
    by_nan = _single_batch_eval(
        model, x, {"click": np.where(mask == 0, np.nan, y["click"]), "dwell": y["dwell"]}
    )
    by_mask = _single_batch_eval(
        model, x, y, sample_weight={"click": mask, "dwell": np.ones(64, "float32")}
    )
    np.testing.assert_allclose(by_nan["click_loss"], by_mask["click_loss"], rtol=1e-6)
    np.testing.assert_allclose(by_nan["dwell_loss"], by_mask["dwell_loss"], rtol=1e-6)


@pytest.mark.parametrize("jit", [False, True])
def test_unlabelled_rows_do_not_move_the_weights(jit):
    """One SGD step on a batch with fully unlabelled rows == the same step
    on the batch without them."""
    x, y = toy_data(32)
    missing = np.zeros(32, bool)
    missing[5:15] = True
    y_missing = {
        "click": np.where(missing, -1.0, y["click"]),
        "dwell": np.where(missing, np.nan, y["dwell"]),
    }

    def one_step(xs, ys):
        model = toy_model(seed=1, jit_compile=jit)
        model.compile(keras.optimizers.SGD(0.1), jit_compile=jit)
        model.fit(xs, ys, batch_size=len(xs), epochs=1, verbose=0, shuffle=False)
        return [v.numpy() for v in model.trainable_variables]

    a = one_step(x, y_missing)
    b = one_step(x[~missing], {k: v[~missing] for k, v in y.items()})
    for va, vb in zip(a, b):
        np.testing.assert_allclose(va, vb, rtol=1e-5, atol=1e-6)


def test_batch_without_any_label_for_a_task_gives_zero_loss_and_no_nan():
    x, y = toy_data(32)
    model = toy_model()
    y["click"][:] = np.nan
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert all(np.isfinite(v.numpy()).all() for v in model.trainable_variables)


def test_fit_logs_per_task_loss_weight_and_metrics(data):
    x, y = data
    model = toy_model("uncertainty")
    history = model.fit(x, y, validation_data=(x, y), epochs=2, batch_size=64, verbose=0)
    for task in ("click", "dwell"):
        assert f"{task}_loss" in history.history and f"val_{task}_loss" in history.history
        # Weights are a training quantity: no `val_<task>_weight`.
        assert f"{task}_weight" in history.history
        assert f"val_{task}_weight" not in history.history
    assert "click_auc" in history.history and "dwell_rmse" in history.history
    assert history.history["dwell_loss"][-1] < history.history["dwell_loss"][0]


def test_jit_and_eager_give_the_same_training():
    x, y = toy_data(128)
    results = []
    for jit in (False, True):
        model = toy_model("uncertainty", seed=3, jit_compile=jit)
        model.fit(x, y, batch_size=32, epochs=2, verbose=0, shuffle=False)
        results.append(model.predict(x[:16], verbose=0))
    for task in results[0]:
        np.testing.assert_allclose(results[0][task], results[1][task], rtol=1e-4, atol=1e-5)


def test_static_weighting_maths():
    strategy = mk.weighting.Static({"click": 2.0})
    strategy.build_for_tasks([mk.Binary("click"), mk.Regression("dwell", weight=0.5)])
    total, weights = strategy.combine(keras.ops.convert_to_tensor([0.3, 4.0]))
    np.testing.assert_allclose(weights, [2.0, 0.5])
    np.testing.assert_allclose(total, 2.0 * 0.3 + 0.5 * 4.0, rtol=1e-6)
    with pytest.raises(ValueError, match="unknown tasks"):
        mk.weighting.Static({"nope": 1.0}).build_for_tasks([mk.Binary("click")])


def test_uncertainty_weighting_maths():
    strategy = mk.weighting.Uncertainty()
    strategy.build_for_tasks([mk.Binary("click"), mk.Regression("dwell")])
    strategy.log_vars.assign([0.5, -1.0])
    losses = np.array([0.3, 4.0], "float32")
    total, weights = strategy.combine(keras.ops.convert_to_tensor(losses))
    expected_w = [np.exp(-0.5), 0.5 * np.exp(1.0)]
    np.testing.assert_allclose(weights, expected_w, rtol=1e-6)
    expected = expected_w[0] * 0.3 + 0.5 * 0.5 + expected_w[1] * 4.0 + 0.5 * -1.0
    np.testing.assert_allclose(total, expected, rtol=1e-6)


def test_compile_overrides_from_task_specs(data):
    x, y = data
    model = toy_model()
    model.compile(
        "adam",
        loss={"dwell": "mae"},
        metrics={"click": ["accuracy"]},
        loss_weights={"click": 3.0},
    )
    logs = _single_batch_eval(model, x, y)
    assert "click_accuracy" in logs and "click_auc" not in logs
    assert "click_weight" not in logs  # training-only
    trained = model.fit(x, y, batch_size=len(x), epochs=1, verbose=0).history
    assert trained["click_weight"][-1] == pytest.approx(3.0)
    model.compile(
        "adam", loss={"dwell": "mae"}, metrics={"click": ["accuracy"]}, loss_weights={"click": 3.0}
    )
    logs = _single_batch_eval(model, x, y)
    pred = model.predict(x, verbose=0)["dwell"][:, 0]
    assert logs["dwell_loss"] == pytest.approx(np.mean(np.abs(pred - y["dwell"])), rel=1e-5)
    with pytest.raises(ValueError, match="unknown tasks.*nope"):
        model.compile("adam", loss_weights={"nope": 1.0})
    with pytest.raises(ValueError, match="Unknown weighting"):
        model.compile("adam", weighting="nope")


def test_bad_labels_name_the_tasks(data):
    x, y = data
    model = toy_model()
    with pytest.raises(ValueError, match="clik.*not tasks"):
        model.evaluate(x, {"clik": y["click"], "dwell": y["dwell"]}, verbose=0)


def test_keras_round_trip_keeps_predictions_tasks_and_weighting_state(tmp_path, data):
    x, y = data
    model = toy_model("uncertainty", loss_weights={"dwell": 0.5})
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, mk.MultiTaskModel)
    assert loaded.tasks == model.tasks
    assert isinstance(loaded.weighting, mk.weighting.Uncertainty)
    np.testing.assert_array_equal(
        loaded.weighting.log_vars.numpy(), model.weighting.log_vars.numpy()
    )
    for task, pred in model.predict(x, verbose=0).items():
        np.testing.assert_array_equal(pred, loaded.predict(x, verbose=0)[task])
    # Training continues with the restored optimizer and weighting.
    history = loaded.fit(x, y, epochs=1, batch_size=64, verbose=0).history
    assert history["click_weight"][-1] > 0


def test_keras_file_reloads_in_a_fresh_process(tmp_path, data):
    x, _ = data
    model = toy_model()
    path = str(tmp_path / "model.keras")
    model.save(path)
    np.save(tmp_path / "x.npy", x)
    code = (
        "import os; os.environ['TF_CPP_MIN_LOG_LEVEL']='3'\n"
        "import numpy as np, keras, mtl_keras\n"
        f"m = keras.saving.load_model({path!r})\n"
        f"p = m.predict(np.load({str(tmp_path / 'x.npy')!r}), verbose=0)\n"
        f"np.savez({str(tmp_path / 'p.npz')!r}, **p)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ})
    fresh = np.load(tmp_path / "p.npz")
    for task, pred in model.predict(x, verbose=0).items():
        np.testing.assert_array_equal(pred, fresh[task])


def test_variable_groups_split_shared_and_task_specific():
    model = toy_model("uncertainty")
    shared, per_task, own = model.variable_groups()
    names = [v.path for v in model.trainable_variables]
    assert all("trunk" in names[i] for i in shared) and shared
    assert all(
        names[i].startswith(("click", "shared_bottom/click")) or "click" in names[i]
        for i in per_task[0]
    )
    assert all("dwell" in names[i] for i in per_task[1])
    assert [names[i] for i in own] == [model.weighting.log_vars.path]


def test_multiclass_and_multilabel_tasks_train():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 6)).astype("float32")
    y = {
        "digit": np.where(rng.random(96) < 0.2, -1, rng.integers(0, 3, 96)),
        "tags": (rng.random((96, 4)) > 0.5).astype("float32"),
    }
    tasks = [mk.Multiclass("digit", 3), mk.Multilabel("tags", 4)]
    model = mk.builders.shared_bottom(keras.Input((6,)), tasks, trunk_units=(8,), tower_units=())
    model.compile("adam")
    history = model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    assert np.isfinite(history.history["digit_loss"]).all()
    assert "tags_auc" in history.history and "digit_accuracy" in history.history


@pytest.mark.parametrize("weighting", ["static", "upgrad"])
def test_fit_traces_the_train_step_once(weighting):
    # The optimizer is built before the first trace: a variable created while
    # tracing would make tf.function trace the whole step a second time.
    x, y = toy_data(40)
    model = toy_model(weighting)
    traces = []
    step = model.train_step
    model.train_step = lambda data: (traces.append(1), step(data))[1]
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert len(traces) == 1
    assert model.optimizer.iterations.numpy() == 6
