"""Pruning under XLA (`jit_compile=True`) and with an EMA optimizer."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from pruning_helpers import data

import mtl_keras as mk
from mtl_keras import compress


def _tiny() -> mk.MultiTaskModel:
    keras.utils.set_random_seed(0)
    tasks = [mk.Binary("click"), mk.Regression("dwell")]
    return mk.builders.shared_bottom(keras.Input((8,)), tasks, trunk_units=(8,), tower_units=())


class MaskCheck(keras.callbacks.Callback):
    """After every step: masked weights are exactly zero; records sparsities."""

    def __init__(self, opt: compress.PruningOptimizer) -> None:
        super().__init__()
        self.opt = opt
        self.seen: list[tuple[int, str, float]] = []

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.opt.iterations.numpy())
        for variable, mask, _ in self.opt.masks:
            w, m = variable.numpy(), mask.numpy()
            assert np.all(w[m == 0] == 0), (step, variable.path)
            self.seen.append((step, variable.path, float(np.mean(m == 0))))


@pytest.mark.slow  # ~6-15 s (XLA compile), depending on the machine's load
def test_masks_zero_the_weights_after_every_step_under_xla():
    x, y = data(128)
    model = _tiny()
    schedule = compress.PolynomialDecay(0.75, begin_step=0, end_step=4, frequency=2)
    opt = compress.pruning_optimizer(model, "adam", schedule)
    model.compile(opt, weighting="static", jit_compile=True)
    check = MaskCheck(opt)
    model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[check])
    assert model.jit_compile
    assert int(opt.iterations.numpy()) == 8
    # The schedule's sparsity at the last mask update, exactly (step 2: 0.75 * (1 - 0.5**3)).
    by_step = {}
    for step, path, sparsity in check.seen:
        by_step.setdefault(step, {})[path] = sparsity
    for path, sparsity in by_step[8].items():
        size = next(v for v, _, _ in opt.masks if v.path == path).numpy().size
        assert sparsity == pytest.approx(round(0.75 * size) / size, abs=1e-6), path
    for path, sparsity in by_step[3].items():
        size = next(v for v, _, _ in opt.masks if v.path == path).numpy().size
        expected = round(float(schedule.sparsity(2, 0.75)) * size) / size
        assert sparsity == pytest.approx(expected, abs=1e-6), path


@pytest.mark.parametrize("overwrite", [None, 3])
def test_ema_optimizer_keeps_pruned_weights_zero(overwrite):
    """An inner optimizer with use_ema=True writes its moving averages into
    the weights (every `ema_overwrite_frequency` steps and at the end of
    `fit`); the averages are masked too, so the zeros survive."""
    x, y = data(256)
    model = _tiny()
    schedule = compress.PolynomialDecay(0.6, begin_step=0, end_step=4, frequency=2)
    inner = keras.optimizers.Adam(0.01, use_ema=True, ema_overwrite_frequency=overwrite)
    opt = compress.pruning_optimizer(model, inner, schedule)
    model.compile(opt, weighting="static")
    check = MaskCheck(opt)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[check])
    # After fit, finalize_variable_values has copied the averages in.
    for variable, mask, final in opt.masks:
        w, m = variable.numpy(), mask.numpy()
        assert np.all(w[m == 0] == 0), variable.path
        assert np.mean(w == 0) == pytest.approx(final, abs=1.0 / w.size), variable.path
        average = inner._model_variables_moving_average[inner._get_variable_index(variable)]
        assert np.all(average.numpy()[m == 0] == 0), variable.path
    assert compress.group_sparsity(model)["shared"] == pytest.approx(0.6, abs=0.01)
