"""RLW: random softmax weights, seedable."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

import mtl_keras as mk
from mtl_keras.weighting import RLW

TASKS = [mk.Binary("a"), mk.Regression("b"), mk.Regression("c")]


def _built(**kwargs) -> RLW:
    strategy = RLW(**kwargs)
    strategy.build_for_tasks(TASKS)
    return strategy


def _draws(strategy: RLW, n: int = 5) -> np.ndarray:
    losses = tf.constant([1.0, 2.0, 3.0])
    return np.stack([strategy.combine(losses, training=True)[1] for _ in range(n)])


def test_weights_positive_sum_to_num_tasks_and_reproducible() -> None:
    a = _draws(_built(seed=3))
    assert np.all(a > 0)
    np.testing.assert_allclose(a.sum(axis=1), 3.0, rtol=1e-6)
    assert not np.allclose(a[0], a[1])  # fresh weights every step
    np.testing.assert_allclose(a, _draws(_built(seed=3)))
    assert not np.allclose(a, _draws(_built(seed=4)))


def test_weights_are_softmax_of_standard_normal() -> None:
    w = _draws(_built(seed=7), n=2)
    gen = keras.random.SeedGenerator(7)
    for row in w:
        z = np.asarray(keras.random.normal((3,), seed=gen))
        np.testing.assert_allclose(row, 3 * np.exp(z) / np.exp(z).sum(), rtol=1e-5)


def test_total_weight_and_evaluation() -> None:
    strategy = _built(seed=1, total_weight=1.0)
    np.testing.assert_allclose(_draws(strategy).sum(axis=1), 1.0, rtol=1e-6)
    state = np.asarray(strategy.seed_generator.state).copy()
    total, w = strategy.combine(tf.constant([1.0, 2.0, 3.0]), training=False)
    np.testing.assert_allclose(w, [1 / 3] * 3, rtol=1e-6)
    np.testing.assert_allclose(total, 2.0, rtol=1e-6)
    np.testing.assert_array_equal(state, np.asarray(strategy.seed_generator.state))
