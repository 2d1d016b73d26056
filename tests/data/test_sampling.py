"""TaskSampler: measured proportions, fixed element spec, heterogeneous training."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import mtl_keras as mk
from mtl_keras.data import TaskSampler, from_arrays, sample_tasks


def _tagged(index: int, batches: int) -> tf.data.Dataset:
    """`batches` one-row batches whose feature is the source index."""
    x = np.full((batches, 1), index, "float32")
    return from_arrays(x, {f"t{index}": np.zeros(batches, "float32")}, batch_size=1)


def _measure(sampler: TaskSampler, steps: int) -> np.ndarray:
    # Gathered in one tensor: iterating thousands of batches eagerly is slow.
    ids = sampler.dataset.map(lambda x, y: tf.cast(x[0, 0], tf.int32)).batch(steps)
    return next(iter(ids)).numpy()


SIZES = (10, 40)  # batches


@pytest.mark.parametrize(
    "sampler, alpha, expected",
    [
        ("uniform", 1.0, [0.5, 0.5]),
        ("proportional", 1.0, [0.2, 0.8]),
        ("proportional", 0.5, [1 / 3, 2 / 3]),  # sqrt(10) : sqrt(40) = 1 : 2
    ],
)
def test_proportions_match_requested(sampler, alpha, expected):
    s = sample_tasks(
        {f"t{i}": _tagged(i, n) for i, n in enumerate(SIZES)}, sampler, alpha=alpha, seed=3
    )
    np.testing.assert_allclose(list(s.probabilities().values()), expected, atol=1e-9)
    ids = _measure(s, 4000)
    measured = np.bincount(ids, minlength=2) / len(ids)
    # 4000 draws: standard error < 0.008.
    np.testing.assert_allclose(measured, expected, atol=0.03)


def test_annealed_moves_toward_uniform_over_epochs():
    s = TaskSampler(
        {f"t{i}": _tagged(i, n) for i, n in enumerate(SIZES)},
        "annealed",
        epochs=3,
        steps_per_epoch=1500,
        seed=1,
    )
    assert s.alpha_at(0) == 1.0 and s.alpha_at(2) == pytest.approx(0.2)
    ids = _measure(s, 3 * 1500).reshape(3, 1500)
    share = (ids == 0).mean(axis=1)
    for epoch in range(3):
        assert share[epoch] == pytest.approx(s.probabilities(epoch)["t0"], abs=0.04)
    assert share[0] < share[1] < share[2]  # the small data set gains weight
    assert s.probabilities(0)["t0"] == pytest.approx(0.2)
    assert s.probabilities(2)["t0"] == pytest.approx(10**0.2 / (10**0.2 + 40**0.2))


def test_fixed_structure_fill_values_and_weights():
    x = np.zeros((4, 2), "float32")
    a = from_arrays(x, {"a": np.ones(4, "float32")}, batch_size=2, sample_weight={"a": np.ones(4)})
    b = from_arrays(x + 1, {"b": np.full(4, 2, "int32")}, batch_size=2)
    s = TaskSampler({"a": a, "b": b}, "uniform", seed=0)
    assert s.steps_per_epoch == 4
    _, y_spec, w_spec = s.dataset.element_spec
    assert sorted(y_spec) == ["a", "b"] and sorted(w_spec) == ["a", "b"]
    for x, y, w in s.dataset.take(20):
        from_b = bool(x[0, 0] == 1)
        assert np.isnan(y["a"].numpy()).all() == from_b
        assert (y["b"].numpy() == -1).all() == (not from_b)
        np.testing.assert_array_equal(w["a"].numpy(), [0.0, 0.0] if from_b else [1.0, 1.0])
        np.testing.assert_array_equal(w["b"].numpy(), [1.0, 1.0] if from_b else [0.0, 0.0])


def test_bare_label_tensors_named_by_key_and_validation():
    x = np.zeros((4, 2), "float32")
    ds = tf.data.Dataset.from_tensor_slices((x, np.ones(4, "float32"))).batch(2)
    pair = tf.data.Dataset.from_tensor_slices((x, (np.ones(4, "float32"), np.ones(4, "int32"))))
    s = TaskSampler({"a": ds, ("b", "c"): pair.batch(2)}, "uniform", seed=0)
    assert sorted(s.dataset.element_spec[1]) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="epochs"):
        TaskSampler({"a": ds}, "annealed")
    with pytest.raises(ValueError, match="sampler"):
        TaskSampler({"a": ds}, "bogus")
    with pytest.raises(ValueError, match="unknown or infinite"):
        TaskSampler({"a": ds.repeat()})


def test_two_heterogeneous_data_sets_learn_both_tasks():
    rng = np.random.default_rng(0)

    def make(n):
        x = rng.normal(size=(n, 6)).astype("float32")
        return x, (x[:, 0] + x[:, 1] > 0).astype("float32"), np.argmax(x[:, 2:5], 1).astype("int32")

    xa, sign, _ = make(1024)  # labelled for `sign` only
    xb, _, arg = make(1024)  # labelled for `argmax` only
    s = sample_tasks(
        {
            "sign": from_arrays(xa, {"sign": sign}, batch_size=32, shuffle=True, seed=0),
            "argmax": from_arrays(xb, {"argmax": arg}, batch_size=32, shuffle=True, seed=1),
        },
        "annealed",
        epochs=6,
        seed=0,
    )
    keras.utils.set_random_seed(0)
    tasks = [mk.Binary("sign"), mk.Multiclass("argmax", 3)]
    model = mk.builders.shared_bottom(
        keras.Input((6,), name="x"), tasks, trunk_units=(32,), tower_units=(16,)
    )
    model.compile(keras.optimizers.Adam(0.01))
    model.fit(s.dataset, steps_per_epoch=s.steps_per_epoch, epochs=6, verbose=0)

    xt, sign_t, arg_t = make(512)
    logs = model.evaluate(xt, {"sign": sign_t, "argmax": arg_t}, return_dict=True, verbose=0)
    assert logs["sign_accuracy"] > 0.9  # chance 0.5
    assert logs["argmax_accuracy"] > 0.8  # chance 1/3
