"""Cross-stitch builder and the CrossStitch layer."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from _support import toy_data
from _support.builders import run_builder_checks

import mtl_keras as mk
from mtl_keras.layers import CrossStitch

TASKS = [mk.Binary("click"), mk.Regression("dwell")]


def small_cross_stitch(tasks=TASKS, **kwargs):
    keras.utils.set_random_seed(0)
    args = {"units": (8, 8), "tower_units": (4,), **kwargs}
    return mk.builders.cross_stitch(keras.Input((8,), name="x"), tasks, **args)


def test_cross_stitch_passes_builder_checks(tmp_path):
    x, y = toy_data(128)
    model = small_cross_stitch()
    run_builder_checks(model, x, y, tmp_path)
    # The mixing matrix is learned.
    alpha = np.asarray(model.get_layer("cross_stitch_0").alpha)
    assert not np.allclose(alpha, [[0.9, 0.1], [0.1, 0.9]])


def test_initial_mixing_matrix():
    model = small_cross_stitch()
    for i in range(2):
        np.testing.assert_allclose(
            np.asarray(model.get_layer(f"cross_stitch_{i}").alpha), [[0.9, 0.1], [0.1, 0.9]]
        )
    three = small_cross_stitch(
        tasks=[mk.Binary("a"), mk.Binary("b"), mk.Binary("c")], self_weight=0.8
    )
    expected = np.full((3, 3), 0.1)
    np.fill_diagonal(expected, 0.8)
    np.testing.assert_allclose(np.asarray(three.get_layer("cross_stitch_0").alpha), expected)
    single = small_cross_stitch(tasks=[mk.Binary("a")])
    np.testing.assert_allclose(np.asarray(single.get_layer("cross_stitch_0").alpha), [[1.0]])


def test_cross_stitch_layer_mixes_columns():
    layer = CrossStitch(0.75)
    a = np.ones((2, 3), "float32")
    b = np.full((2, 3), 2.0, "float32")
    out_a, out_b = layer([a, b])
    np.testing.assert_allclose(out_a, 0.75 * a + 0.25 * b, rtol=1e-6)
    np.testing.assert_allclose(out_b, 0.25 * a + 0.75 * b, rtol=1e-6)
    assert CrossStitch.from_config(layer.get_config()).self_weight == 0.75
    with pytest.raises(ValueError, match="same shape"):
        CrossStitch()([a, np.ones((2, 4), "float32")])
    with pytest.raises(ValueError, match="self_weight"):
        CrossStitch(1.5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"units": ()}, "units"),
        ({"units": (8, -1)}, "units"),
        ({"tower_units": 3}, "tower_units"),
        ({"self_weight": -0.1}, "self_weight"),
    ],
)
def test_cross_stitch_argument_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        small_cross_stitch(**kwargs)
