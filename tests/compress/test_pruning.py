"""Magnitude pruning: masks, schedule, weighting strategies, saving, strip."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from pruning_helpers import data
from pruning_helpers import model as make_model

from mtl_keras import compress


def test_schedule_values():
    s = compress.PolynomialDecay(0.8, begin_step=10, end_step=110, frequency=20, power=3)
    assert float(s.sparsity(0)) == pytest.approx(0.0)
    assert float(s.sparsity(60)) == pytest.approx(0.8 * (1 - 0.5**3))
    assert float(s.sparsity(500)) == pytest.approx(0.8)
    updates = [t for t in range(0, 200) if bool(s.should_update(t))]
    assert updates == [10, 30, 50, 70, 90, 110]
    assert s.sparsity(110, final=0.5).numpy() == pytest.approx(0.5)


def test_magnitude_mask_exact_count():
    w = tf.constant(np.random.default_rng(0).normal(size=(10, 7)), tf.float32)
    mask = compress.magnitude_mask(w, 0.3).numpy()
    assert mask.sum() == 70 - 21
    kept = np.abs(w.numpy())[mask == 1]
    dropped = np.abs(w.numpy())[mask == 0]
    assert kept.min() >= dropped.max()


def _pruned(model, schedule, **kwargs):
    opt = compress.pruning_optimizer(model, "adam", schedule, **kwargs)
    return opt


def test_groups_get_their_targets():
    model = make_model()
    opt = _pruned(model, compress.PolynomialDecay(0.5, 0, 10, 2), task_sparsity={"click": 0.9})
    groups = compress.variable_groups_by_path(model)
    for path, target in opt.targets.items():
        assert path.endswith("kernel")
        expected = {"shared": 0.5, "click": 0.9, "dwell": 0.5}[groups[path]]
        assert target == expected
    assert {groups[p] for p in opt.targets} == {"shared", "click", "dwell"}


@pytest.mark.parametrize("weighting", ["uncertainty", "pcgrad"])
def test_masks_zero_weights_every_step_and_reach_schedule(weighting):
    import keras

    x, y = data()
    model = make_model()
    schedule = compress.PolynomialDecay(0.6, begin_step=2, end_step=12, frequency=2)
    opt = _pruned(model, schedule, shared_sparsity=0.6, task_sparsity=0.8)
    model.compile(opt, weighting=weighting)
    seen = []

    class Check(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            step = int(opt.iterations.numpy())
            for variable, mask, final in opt.masks:
                w, m = variable.numpy(), mask.numpy()
                # Masked entries are exactly zero after every step.
                assert np.all(w[m == 0] == 0), (step, variable.path)
                seen.append((step, variable.path, float(np.mean(m == 0)), final))

    history = model.fit(
        x, y, batch_size=32, epochs=1, verbose=0, callbacks=[Check(), compress.PruningCallback()]
    )
    assert int(opt.iterations.numpy()) == 16
    # Sparsity follows the schedule at each mask update (exact count).
    for step, path, sparsity, final in seen:
        last_update = max([t for t in range(0, step + 1) if bool(schedule.should_update(t))] or [0])
        if last_update == 0:
            assert sparsity == 0.0
            continue
        size = next(v for v, _, _ in opt.masks if v.path == path).numpy().size
        expected = round(float(schedule.sparsity(last_update, final)) * size) / size
        assert sparsity == pytest.approx(expected, abs=1e-6), (step, path)
    report = compress.group_sparsity(model)
    assert report["shared"] == pytest.approx(0.6, abs=0.01)
    assert report["click"] == pytest.approx(0.8, abs=0.01)
    assert history.history["sparsity_shared"][-1] == pytest.approx(0.6, abs=0.01)
    assert np.isfinite(history.history["loss"]).all()


def test_save_load_resume_keeps_masks_and_schedule(tmp_path):
    import keras

    x, y = data()
    model = make_model()
    schedule = compress.PolynomialDecay(0.7, begin_step=0, end_step=32, frequency=8)
    model.compile(_pruned(model, schedule), weighting="static")
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)  # 16 steps: half way
    path = tmp_path / "pruned.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    opt = model.optimizer
    ropt = restored.optimizer
    assert isinstance(ropt, compress.PruningOptimizer)
    assert int(ropt.iterations.numpy()) == 16
    masks = {v.path: m.numpy() for v, m, _ in opt.masks}
    rmasks = {v.path: m.numpy() for v, m, _ in ropt.masks}
    assert masks.keys() == rmasks.keys()
    for key in masks:
        np.testing.assert_array_equal(masks[key], rmasks[key])
    # Resume: both continue identically and reach the final sparsity.
    model.fit(x, y, batch_size=32, epochs=2, verbose=0, shuffle=False)
    restored.fit(x, y, batch_size=32, epochs=2, verbose=0, shuffle=False)
    for a, b in zip(model.trainable_variables, restored.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
    assert compress.group_sparsity(restored)["shared"] == pytest.approx(0.7, abs=0.01)


@pytest.mark.slow
def test_moderate_sparsity_accuracy_close_to_dense():
    x, y = data(2048)
    xv, yv = data(1024, seed=1)
    results = {}
    for sparsity in (0.0, 0.5):
        model = make_model()
        if sparsity:
            opt = _pruned(model, compress.PolynomialDecay(sparsity, 0, 96, 16))
        else:
            opt = "adam"
        model.compile(opt, weighting="static")
        model.fit(x, y, batch_size=64, epochs=12, verbose=0)
        results[sparsity] = model.evaluate(xv, yv, verbose=0, return_dict=True)
    # Stated tolerance: 50 % sparsity costs at most 3 accuracy points.
    assert results[0.5]["click_accuracy"] >= results[0.0]["click_accuracy"] - 0.03
    assert results[0.0]["click_accuracy"] > 0.9


def test_strip_pruning_keeps_zeros_and_stops_pruning(tmp_path):
    import keras

    x, y = data()
    model = make_model()
    model.compile(_pruned(model, compress.PolynomialDecay(0.5, 0, 8, 4)), weighting="static")
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    before = compress.group_sparsity(model)
    compress.strip_pruning(model)
    assert not isinstance(model.optimizer, compress.PruningOptimizer)
    assert compress.group_sparsity(model, pruned_only=False)["shared"] > 0
    assert before["shared"] == pytest.approx(0.5, abs=0.01)
    model.save(tmp_path / "stripped.keras")
    restored = keras.saving.load_model(tmp_path / "stripped.keras")
    np.testing.assert_allclose(
        restored.predict(x[:8], verbose=0)["dwell"], model.predict(x[:8], verbose=0)["dwell"]
    )


def test_steps_per_execution():
    # Masks are applied inside the traced step: also when several steps run
    # per execution (no callback in between). XLA: test_pruning_xla_ema.py.
    x, y = data(256)
    model = make_model()
    schedule = compress.PolynomialDecay(0.5, begin_step=0, end_step=6, frequency=3)
    opt = _pruned(model, schedule)
    model.compile(opt, weighting="static", steps_per_execution=4)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert int(opt.iterations.numpy()) == 8
    for variable, mask, _ in opt.masks:
        w, m = variable.numpy(), mask.numpy()
        assert np.all(w[m == 0] == 0)
        assert np.mean(m == 0) == pytest.approx(0.5, abs=1 / m.size)
