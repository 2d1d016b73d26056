"""Integrated gradients on raw features: completeness, agreement with permutation."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from explain_helpers import data, trained

from mtl_keras import explain

#: Stated tolerance: with the midpoint rule and 128 steps, the attributions of
#: every row sum to f(x) - f(baseline) within 2 % of the mean |f(x) - f(baseline)|
#: over the explained rows (ReLU kinks and saturated sigmoids make the Riemann
#: error first order in 1/steps).
STEPS, TOLERANCE = 128, 0.02


def _rows(x, n=48):
    return {k: v[:n] for k, v in x.items()}


def test_completeness_tabular_categorical_and_numeric():
    model, x, _ = trained()
    attr = explain.integrated_gradients(model, _rows(x), steps=STEPS)
    assert set(attr.values) == {"alpha", "beta"}
    assert set(attr.values["alpha"]) == {
        "num_a",
        "num_b",
        "num_noise",
        "amount",
        "cat_c",
        "cat_noise",
    }
    for task in ("alpha", "beta"):
        delta = attr.outputs[task] - attr.baseline_outputs[task]
        assert np.abs(delta).mean() > 0.1  # non-trivial
        assert attr.completeness_error(task) < TOLERANCE
    # The log-transformed feature matters to beta, and completeness still holds.
    assert np.abs(attr.values["beta"]["amount"]).mean() > 0.01
    # f(x) is the model's own prediction.
    pred = model.predict(explain.attributions.pack_inputs(model, _rows(x)), verbose=0)
    np.testing.assert_allclose(attr.outputs["alpha"], pred["alpha"][:, 0], atol=1e-5)


@pytest.mark.parametrize("baseline", ["mean", "oov", "zeros"])
def test_every_categorical_baseline_complete_and_batch_independent(baseline):
    model, x, _ = trained()
    rows = _rows(x, 10)
    a, b = (
        explain.integrated_gradients(
            model, rows, steps=32, batch_size=size, categorical_baseline=baseline
        )
        for size in (3, 10)
    )
    for f in a.values["beta"]:
        np.testing.assert_allclose(a.values["beta"][f], b.values["beta"][f], atol=1e-5)
    assert a.completeness_error("beta") < 0.05  # 32 steps


def test_rankings_agree_with_permutation_and_truth():
    model, _, _ = trained()
    xv, yv = data(600, seed=1)
    ig = explain.importance_table(
        explain.integrated_gradients(model, _rows(xv, 200), steps=32, batch_size=100)
    )
    perm = explain.permutation_importance(model, xv, yv, repeats=2)
    assert list(perm.index) == list(ig.loc[perm.index].index)
    for task, relevant in (("alpha", {"num_a", "cat_c"}), ("beta", {"num_b", "num_a"})):
        top_ig = set(ig[task].sort_values(ascending=False).index[:2])
        top_perm = set(perm[task].sort_values(ascending=False).index[:2])
        assert top_ig == relevant, ig[task]
        assert top_perm == relevant, perm[task]
        # Noise features are unimportant for both methods.
        for noise in ("num_noise", "cat_noise"):
            assert ig.loc[noise, task] < 0.1 * ig.loc[list(relevant), task].min()
            assert perm.loc[noise, task] < 0.1 * perm.loc[list(relevant), task].min()
    shared = explain.shared_features(ig, top=2)
    assert shared.loc["num_a", "tasks_using"] == 2
    assert shared.loc["cat_c", "tasks_using"] == 1


def test_token_and_pixel_attributions_complete():
    keras.utils.set_random_seed(0)
    import mtl_keras as mk

    tokens = keras.Input((6,), dtype="int32", name="tokens")
    image = keras.Input((4, 4, 1), name="image")
    t = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(20, 5, name="words")(tokens))
    i = keras.layers.Flatten()(keras.layers.Conv2D(2, 3, activation="tanh")(image))
    h = keras.layers.Dense(8, activation="tanh")(keras.layers.Concatenate()([t, i]))
    tasks = [mk.Binary("spam"), mk.Multiclass("topic", num_classes=3)]
    model = mk.MultiTaskModel([tokens, image], {k.name: k.head(h) for k in tasks}, tasks=tasks)
    rng = np.random.default_rng(0)
    x = [rng.integers(1, 20, size=(5, 6)), rng.normal(size=(5, 4, 4, 1)).astype("float32")]
    attr = explain.integrated_gradients(model, x, steps=STEPS)
    assert attr.values["spam"]["words"].shape == (5, 6)  # per token
    assert attr.values["spam"]["image"].shape == (5, 4, 4, 1)  # per pixel
    for task in ("spam", "topic"):
        assert attr.completeness_error(task) < TOLERANCE


def test_sequence_output_is_rejected_with_task_name():
    import mtl_keras as mk

    x = keras.Input((3, 2), name="x")
    tasks = [mk.Regression("r", units=2)]
    seq = keras.layers.Dense(2, name="r")(x)
    model = keras.Model(x, {"r": seq})
    with pytest.raises(ValueError, match="task 'r'"):
        explain.integrated_gradients(model, np.zeros((2, 3, 2), "float32"))
    del tasks
