"""Fusion layers: masking, fusion over the present modalities only, configs."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from mtl_keras.layers import (
    ExpertMixture,
    FusionWeights,
    ModalityConcat,
    ModalityMask,
    ModalityStack,
    ModalityTowers,
)

RNG = np.random.default_rng(0)
TOKENS = RNG.normal(size=(5, 3, 4)).astype("float32")


def _fused(layer: FusionWeights, tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = layer([tokens, mask])
    return np.asarray(ExpertMixture()([tokens, weights])), np.asarray(weights)


def test_attention_fusion_with_a_missing_modality_equals_fusion_over_the_present_ones():
    layer = FusionWeights("attention", units=6, task="t")
    mask = np.ones((5, 3), "float32")
    mask[:, 1] = 0.0  # the whole batch lacks modality 1
    mask[0] = [0, 0, 1]  # row 0 also lacks modality 0
    garbage = TOKENS.copy()
    garbage[:, 1] = 1e6  # whatever the missing token holds
    fused, weights = _fused(layer, garbage, mask)
    np.testing.assert_array_equal(weights[:, 1], 0.0)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)
    # Same layer (same weights) on the present modalities only.
    present = TOKENS[:, [0, 2]]
    sub_fused, sub_weights = _fused(layer, present[1:], np.ones((4, 2), "float32"))
    np.testing.assert_allclose(weights[1:, [0, 2]], sub_weights, rtol=1e-6)
    np.testing.assert_allclose(fused[1:], sub_fused, rtol=1e-5, atol=1e-6)
    only, _ = _fused(layer, TOKENS[:1, 2:], np.ones((1, 1), "float32"))
    np.testing.assert_allclose(fused[:1], only, rtol=1e-6)
    np.testing.assert_allclose(only, TOKENS[:1, 2], rtol=1e-6)  # one modality: itself


def test_static_weights_renormalise_over_present_modalities():
    layer = FusionWeights("static", num_modalities=3, task="t")
    layer.build([(None, 3, 4), (None, 3)])
    layer.set_weights([np.array([1.0, 2.0, 0.5], "float32")])
    mask = np.array([[1, 1, 1], [1, 0, 1], [0, 0, 0]], "float32")
    w = np.asarray(layer([TOKENS[:3], mask]))
    e = np.exp([1.0, 2.0, 0.5])
    np.testing.assert_allclose(w[0], e / e.sum(), rtol=1e-6)
    np.testing.assert_allclose(w[1], [e[0] / (e[0] + e[2]), 0, e[2] / (e[0] + e[2])], rtol=1e-6)
    np.testing.assert_array_equal(w[2], 0.0)  # nothing present: no NaN, fused = 0


def test_modality_stack_zeroes_missing_tokens_even_non_finite():
    a = np.full((2, 3), np.nan, "float32")
    b = np.ones((2, 3), "float32")
    mask = ModalityMask()([np.array([0.0, 1.0]), np.array([[1.0], [1.0]])])
    assert np.asarray(mask).tolist() == [[0.0, 1.0], [1.0, 1.0]]
    tokens = np.asarray(ModalityStack(["x", "y"])([a, b, mask]))
    np.testing.assert_array_equal(tokens[0, 0], 0.0)
    assert np.isnan(tokens[1, 0]).all()  # present and NaN stays visible
    np.testing.assert_array_equal(tokens[:, 1], 1.0)
    concat = np.asarray(ModalityConcat()([np.nan_to_num(tokens), mask]))
    assert concat.shape == (2, 8)
    np.testing.assert_array_equal(concat[0], [0, 0, 0, 1, 1, 1, 0, 1])


def test_modality_towers_apply_one_mlp_per_modality():
    towers = ModalityTowers(3, (2,), activation="linear")
    out = np.asarray(towers(TOKENS))
    for k in range(3):
        np.testing.assert_allclose(out[:, k], np.asarray(towers.towers[k](TOKENS[:, k])), 1e-6)
    assert not np.allclose(out[:, 0], out[:, 1])  # separate weights


@pytest.mark.parametrize(
    "make",
    [
        lambda: FusionWeights("attention", units=3, task="t", modalities=["a", "b", "c"]),
        lambda: FusionWeights("static", num_modalities=3, task="t"),
        lambda: ModalityTowers(3, (2, 3), dropout=0.1, l2=0.01),
        lambda: ModalityStack(["a", "b", "c"], {"a": ["x"], "c": ["y", "z"]}),
        lambda: ModalityConcat(),
    ],
)
def test_layers_round_trip_through_config(make):
    layer = make()
    mask = np.array([[1, 0, 1]] * 5, "float32")
    if isinstance(layer, ModalityStack):
        args = [TOKENS[:, 0], TOKENS[:, 1], TOKENS[:, 2], mask]
    elif isinstance(layer, ModalityTowers):
        args = TOKENS
    else:
        args = [TOKENS, mask]
    out = np.asarray(layer(args))
    clone = keras.layers.deserialize(keras.layers.serialize(layer))
    assert clone.get_config() == layer.get_config()
    clone(args)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(np.asarray(clone(args)), out, rtol=1e-6)


def test_layer_argument_errors():
    with pytest.raises(ValueError, match="mode"):
        FusionWeights("gated")
    with pytest.raises(ValueError, match="num_modalities"):
        FusionWeights("static")
    with pytest.raises(ValueError, match="3 modalities"):
        FusionWeights("static", num_modalities=2, task="t")([TOKENS, np.ones((5, 3))])
    with pytest.raises(ValueError, match="distinct"):
        ModalityStack(["a", "a"])
    with pytest.raises(ValueError, match="unknown modalities"):
        ModalityStack(["a"], {"b": ["x"]})
    with pytest.raises(ValueError, match="expects 2 embeddings"):
        ModalityStack(["a", "b"])([TOKENS[:, 0], np.ones((5, 1))])
