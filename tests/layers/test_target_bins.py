"""Target-aware (tree) bin edges: where they go, the multi-task impurity,
missing values, and `TabularEncoder.adapt(bins="target")`."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import mtl_keras as mk
from mtl_keras.layers.numeric_embeddings import quantile_bin_edges
from mtl_keras.layers.target_bins import bin_impurity, target_bin_edges


def _gap(x: np.ndarray, t: float) -> tuple[float, float]:
    """The candidate gap around threshold t: the last value below it and the first at/after it."""
    return float(x[x < t].max()), float(x[x >= t].min())


def _has_edge_in(edges: list[float], lo: float, hi: float) -> bool:
    return any(lo <= e <= hi for e in edges)


def test_step_function_thresholds_are_found_within_a_candidate_gap():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 10, 3000)
    y = np.select([x < 2.5, x < 7.0], [0.0, 1.0], 0.3)
    edges = target_bin_edges(x, y, num_bins=16, min_leaf=20)
    # Noiseless: two splits make every bin pure, and the tree stops there.
    assert len(edges) == 4 and edges[0] == x.min() and edges[-1] == x.max()
    for t in (2.5, 7.0):
        assert _has_edge_in(edges, *_gap(x, t)), (t, edges)

    # Noisy 0/1 labels (a Gini tree): the thresholds are still among the edges.
    x = rng.uniform(0, 10, 20_000)
    p = np.select([x < 2.5, x < 7.0], [0.1, 0.6], 0.2)
    edges = target_bin_edges(x, (rng.random(x.size) < p).astype("float32"), 8, min_leaf=200)
    assert len(edges) == 9
    for t in (2.5, 7.0):
        assert min(abs(np.array(edges) - t)) < 0.1, (t, edges)
    assert np.all(np.diff(edges) > 0)


def test_impurity_at_most_quantile_bins_and_matches_its_definition():
    rng = np.random.default_rng(1)
    x = rng.lognormal(0, 1, 5000)  # skewed: quantile bins crowd the low values
    y = 2.0 * (x > 4.0) + 1.0 * (x > 8.0) + rng.normal(0, 0.5, x.size)
    for k in (2, 4, 8, 16):
        tree, quantile = target_bin_edges(x, y, k, min_leaf=20), quantile_bin_edges(x, k)
        assert len(tree) - 1 <= k
        assert bin_impurity(x, y, tree) <= bin_impurity(x, y, quantile), k
    # One task: the fraction of the label's variance left within the bins.
    edges = quantile_bin_edges(x, 4)
    bins = np.searchsorted(edges[1:-1], x, side="right")
    within = sum(((y[bins == b] - y[bins == b].mean()) ** 2).sum() for b in np.unique(bins))
    assert bin_impurity(x, y, edges) == pytest.approx(within / ((y - y.mean()) ** 2).sum())
    assert bin_impurity(x, {"a": y, "b": y}, edges) == pytest.approx(2 * within / y.var() / y.size)


@pytest.mark.parametrize("kind", ["regression", "binary"])
def test_one_task_is_the_papers_tree(kind):
    tree = pytest.importorskip("sklearn.tree")
    rng = np.random.default_rng(2)
    # float32-representable values: scikit-learn compares features in float32.
    x = rng.uniform(0, 10, 2000).astype("float32").astype("float64")
    signal = np.sin(x) + 0.3 * x
    if kind == "regression":
        y = signal + rng.normal(0, 0.3, x.size)
        model = tree.DecisionTreeRegressor(max_leaf_nodes=10, min_samples_leaf=30)
    else:
        y = (rng.random(x.size) < 1 / (1 + np.exp(-2 * (signal - 1.5)))).astype("float64")
        model = tree.DecisionTreeClassifier(max_leaf_nodes=10, min_samples_leaf=30)
    fitted = model.fit(x[:, None], y).tree_
    expected = sorted(fitted.threshold[fitted.feature >= 0])
    edges = target_bin_edges(x, y, num_bins=10, min_leaf=30)
    np.testing.assert_allclose(edges, [x.min(), *expected, x.max()], atol=1e-5)


def test_two_tasks_on_different_scales_both_get_their_thresholds():
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, 4000)
    amount = 1000.0 * (x > 0.3) + rng.normal(0, 300, x.size)  # large scale, noisy
    click = (rng.random(x.size) < np.where(x > 0.7, 0.8, 0.1)).astype("float32")
    labels = {"amount": amount, "click": click}
    edges = target_bin_edges(x, labels, num_bins=3, min_leaf=50)
    # Unnormalised, the amount's noise would out-bid the click's step for the
    # second split; normalised, each task's step is one of the two splits.
    assert len(edges) == 4
    assert abs(edges[1] - 0.3) < 0.03 and abs(edges[2] - 0.7) < 0.03, edges
    # Each task counts as a fraction of its own variance: rescaling changes nothing.
    rescaled = target_bin_edges(x, {"amount": amount / 1e4, "click": click}, 3, min_leaf=50)
    assert rescaled == edges


def test_missing_features_and_labels():
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 1, 3000)
    y = (rng.random(x.size) < np.where(x > 0.6, 0.9, 0.2)).astype("float64")
    reference = target_bin_edges(x, y, 8, min_leaf=50)
    # NaN / infinite features: those rows are left out entirely.
    x_missing = x.copy()
    x_missing[::7], x_missing[1::50] = np.nan, np.inf
    keep = np.isfinite(x_missing)
    edges = target_bin_edges(x_missing, y, 8, min_leaf=50)
    assert edges == target_bin_edges(x[keep], y[keep], 8, min_leaf=50)
    assert np.all(np.isfinite(edges))
    # NaN labels: left out of that task's statistics; an unlabelled or
    # constant task carries no information and changes nothing.
    none = np.full(x.size, np.nan)
    assert target_bin_edges(x, {"y": y, "none": none, "one": np.ones(x.size)}, 8, 50) == reference
    upper = np.where(x > 0.4, y, np.nan)  # labels only for x > 0.4: the step at 0.6 is there
    edges = target_bin_edges(x, upper, 2, min_leaf=50)
    assert len(edges) == 3 and abs(edges[1] - 0.6) < 0.03
    # No task with information at all: one bin.
    assert target_bin_edges(x, none, 8) == [x.min(), x.max()]


def test_constant_few_distinct_and_zero_heavy_columns():
    assert target_bin_edges(np.full(100, 3.0), np.arange(100.0), 8, min_leaf=1) == [3.0, 4.0]
    rng = np.random.default_rng(5)
    x = rng.integers(0, 3, 600).astype("float64")  # 3 distinct values, 32 bins asked
    edges = target_bin_edges(x, x + rng.normal(0, 0.1, x.size), 32, min_leaf=1)
    assert edges == [0.0, 0.5, 1.5, 2.0]
    # 80% zeros: the point mass at 0 is one atom (never cut, no duplicate
    # edges), and the 0-vs-positive step is found: the first bin holds the
    # zeros and (label noise) at most a few of the smallest positive values.
    x = np.where(rng.random(5000) < 0.8, 0.0, rng.lognormal(8, 1, 5000))
    y = (rng.random(x.size) < np.where(x > 0, 0.7, 0.05)).astype("float32")
    edges = target_bin_edges(x, y, 8, min_leaf=50)
    assert edges[0] == 0.0 and 0 < edges[1] < np.quantile(x[x > 0], 0.05)
    assert np.all(np.diff(edges) > 0) and len(edges) <= 9
    # min_leaf caps the number of bins: 5000 rows, >= 1000 per bin.
    assert len(target_bin_edges(x, y, 32, min_leaf=1000)) - 1 <= 5


def test_integer_labels_are_class_ids():
    rng = np.random.default_rng(6)
    x = rng.uniform(0, 3, 1500)
    ids = np.floor(x).astype("int64")  # class changes at 1 and 2
    ids[::10] = -1  # missing
    edges = target_bin_edges(x, ids, 8, min_leaf=20)
    assert len(edges) == 4 and abs(edges[1] - 1) < 0.02 and abs(edges[2] - 2) < 0.02
    # 0/1 as integers (one-hot, normalised) = 0/1 as floats.
    y = (rng.random(x.size) < x / 3).astype("int64")
    assert target_bin_edges(x, y, 6, 30) == target_bin_edges(x, y.astype("float32"), 6, 30)


def test_clear_errors():
    x = np.arange(10.0)
    with pytest.raises(
        ValueError, match=r"targets\['click'\] has 9 rows, the feature values have 10"
    ):
        target_bin_edges(x, {"click": np.zeros(9)})
    with pytest.raises(ValueError, match="no finite values"):
        target_bin_edges(np.full(3, np.nan), np.zeros(3))
    with pytest.raises(ValueError, match="num_bins must be >= 1"):
        target_bin_edges(x, x, num_bins=0)
    with pytest.raises(ValueError, match="min_leaf must be >= 1"):
        target_bin_edges(x, x, min_leaf=0)
    with pytest.raises(ValueError, match="must be numeric labels"):
        target_bin_edges(x, np.array(["a"] * 10))
    with pytest.raises(ValueError, match="`targets` is empty"):
        target_bin_edges(x, {})


def test_fast_on_census_sized_columns():
    import time

    rng = np.random.default_rng(7)
    x = rng.lognormal(0, 1, 200_000)
    labels = {"a": (rng.random(x.size) < 1 / (1 + 1 / x)).astype("float32"),
              "b": np.log(x) + rng.normal(0, 1, x.size)}  # fmt: skip
    t0 = time.process_time()
    edges = target_bin_edges(x, labels, num_bins=32, min_leaf=64)
    assert len(edges) == 33
    assert time.process_time() - t0 < 5.0  # about 0.3 s; generous for loaded machines


# ------------------------------------------------------------ TabularEncoder


def _census_like(n: int = 600, seed: int = 0) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    features = {
        "city": rng.choice(["paris", "lyon", "nice"], size=n).astype(object),
        "age": rng.uniform(18, 80, size=n).astype("float32"),
        "gains": np.where(rng.random(n) < 0.8, 0.0, rng.lognormal(8, 1, n)).astype("float32"),
    }
    labels = {
        "click": (features["age"] > 40).astype("float32"),
        "dwell": (features["gains"] > 3000).astype("float32") + rng.normal(0, 0.1, n),
    }
    labels["click"][::5] = np.nan  # missing labels
    return features, labels


ADAPT = dict(
    categorical=["city"], numeric=["age", "gains"], log_features=["gains"],
    numeric_encoding="piecewise_linear", num_bins=8, bins="target", min_bin_rows=20,
)  # fmt: skip


def test_adapt_with_target_bins_fits_each_column_and_round_trips_config():
    features, labels = _census_like()
    encoder = mk.layers.TabularEncoder.adapt(features, targets=labels, bin_embedding_dim=3, **ADAPT)
    log_gains = np.log1p(features["gains"].astype("float64"))
    assert encoder.bin_edges["gains"] == target_bin_edges(log_gains, labels, 8, min_leaf=20)
    assert encoder.bin_edges["age"] == target_bin_edges(features["age"], labels, 8, min_leaf=20)
    assert any(abs(e - 40) < 0.5 for e in encoder.bin_edges["age"])  # click's threshold
    assert any(abs(e - np.log1p(3000)) < 0.3 for e in encoder.bin_edges["gains"])  # dwell's
    assert (
        encoder.bin_edges
        != mk.layers.TabularEncoder.adapt(features, **{**ADAPT, "bins": "quantile"}).bin_edges
    )

    inputs = {k: tf.constant(v) for k, v in features.items()}
    expected = encoder(inputs).numpy()
    clone = mk.layers.TabularEncoder.from_config(encoder.get_config())
    clone(inputs)
    clone.set_weights(encoder.get_weights())
    assert clone.bin_edges == encoder.bin_edges
    np.testing.assert_array_equal(clone(inputs).numpy(), expected)


def test_adapt_takes_target_bins_labels_from_a_dataset():
    features, labels = _census_like()
    from_arrays = mk.layers.TabularEncoder.adapt(features, targets=labels, **ADAPT).bin_edges
    pairs = tf.data.Dataset.from_tensor_slices((features, labels)).batch(128)
    weights = np.ones(len(features["age"]), "float32")
    triples = tf.data.Dataset.from_tensor_slices((features, labels, weights)).batch(128)
    for ds in (pairs, triples):
        edges = mk.layers.TabularEncoder.adapt(ds, **ADAPT).bin_edges
        for name in ("age", "gains"):
            np.testing.assert_allclose(edges[name], from_arrays[name], rtol=1e-6)
    # One label array instead of a dict (single-task dataset).
    single = tf.data.Dataset.from_tensor_slices((features, labels["dwell"])).batch(128)
    edges = mk.layers.TabularEncoder.adapt(single, **ADAPT).bin_edges
    expected = mk.layers.TabularEncoder.adapt(features, targets=labels["dwell"], **ADAPT).bin_edges
    for name in ("age", "gains"):
        np.testing.assert_allclose(edges[name], expected[name], rtol=1e-6)


def test_adapt_target_bins_errors_name_the_argument():
    features, labels = _census_like(100)
    adapt = mk.layers.TabularEncoder.adapt
    with pytest.raises(ValueError, match="bins='target' needs `targets`"):
        adapt(features, **ADAPT)
    with pytest.raises(ValueError, match="bins='target' needs `targets`"):
        adapt(tf.data.Dataset.from_tensor_slices(features).batch(32), **ADAPT)
    with pytest.raises(
        ValueError, match=r"targets\['dwell'\] has 99 rows, the feature values have 100"
    ):
        adapt(features, targets={**labels, "dwell": labels["dwell"][:99]}, **ADAPT)
    with pytest.raises(
        ValueError, match="pass numeric_encoding='piecewise_linear' \\(got 'periodic'"
    ):
        adapt(features, targets=labels, **{**ADAPT, "numeric_encoding": "periodic"})
    with pytest.raises(ValueError, match="`bins` must be one of \\('quantile', 'target'\\)"):
        adapt(features, **{**ADAPT, "bins": "tree"})
    with pytest.raises(ValueError, match="`targets` are only used with bins='target'"):
        adapt(features, targets=labels, **{**ADAPT, "bins": "quantile"})
