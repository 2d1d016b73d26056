"""What aggregators log as task weights: the weights of their combination."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import mtl_keras as mk
from mtl_keras import weighting

NAMES = [n for n, c in weighting.STRATEGIES.items() if issubclass(c, weighting.GradientAggregator)]
# Deterministic settings, so that two instances agree.
PARAMS = {"pcgrad": {"random_order": False}, "gradvac": {"random_order": False},
          "graddrop": {"seed": 3}}  # fmt: skip


def _make(name: str, m: int) -> weighting.GradientAggregator:
    agg = weighting.STRATEGIES[name](**PARAMS.get(name, {}))
    agg.build_for_tasks([mk.Regression(f"t{i}") for i in range(m)])
    return agg


@pytest.mark.parametrize("name", NAMES)
def test_direction_matches_aggregate_and_weights_rebuild_it(name: str) -> None:
    rng = np.random.default_rng(0)
    jac = tf.constant(rng.normal(size=(3, 40)) * [[1.0], [3.0], [0.2]], tf.float32)
    direction, weights = _make(name, 3).direction_and_weights(jac)
    np.testing.assert_allclose(
        direction.numpy(), _make(name, 3).aggregate(jac).numpy(), rtol=1e-5, atol=1e-6
    )
    assert weights.dtype == tf.float32 and weights.shape == (3,)
    if not weighting.STRATEGIES[name].is_combination:
        return  # GradDrop: least-squares weights of a direction outside the row span
    # Independent rows: the logged weights are the (unique) combination.
    np.testing.assert_allclose(
        weights.numpy() @ jac.numpy(), direction.numpy(), rtol=1e-4, atol=1e-5
    )


def test_mgda_logs_convex_weights() -> None:
    jac = tf.constant([[1.0, 0.0], [0.0, 2.0]])
    _, weights = _make("mgda", 2).direction_and_weights(jac)
    np.testing.assert_allclose(weights.numpy(), [0.8, 0.2], atol=1e-3)  # min-norm point


def test_graddrop_logs_the_kept_share_of_each_gradient() -> None:
    agree = tf.constant([[1.0, 2.0, -1.0], [3.0, 0.5, -2.0]])
    _, weights = _make("graddrop", 2).direction_and_weights(agree)
    np.testing.assert_allclose(weights.numpy(), [1.0, 1.0])  # same signs: all kept
    opposite = tf.constant([[1.0, 1.0, 1.0, 1.0], [-1.0, -1.0, -1.0, -1.0]])
    _, weights = _make("graddrop", 2).direction_and_weights(opposite)
    # Purity 1/2: each coordinate keeps exactly one of the two tasks.
    np.testing.assert_allclose(weights.numpy().sum(), 1.0, atol=1e-6)
    assert np.all((weights.numpy() >= 0) & (weights.numpy() <= 1))


@pytest.mark.parametrize("mode", ["eager", "graph", "jit_solver"])
@pytest.mark.parametrize("name", NAMES)
def test_solver_passes_non_finite_jacobians_on_as_nan(name: str, mode: str) -> None:
    rng = np.random.default_rng(1)
    finite = rng.normal(size=(3, 40)).astype("float32")
    agg = _make(name, 3)
    agg.jit_solver = mode == "jit_solver"
    solve = agg.solver()
    if mode == "graph":
        solve = tf.function(solve)
    direction, weights = solve(tf.constant(finite))
    expected, expected_weights = _make(name, 3).direction_and_weights(tf.constant(finite))
    if not (name == "graddrop" and agg.jit_solver):  # XLA draws other random numbers
        np.testing.assert_allclose(direction.numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(weights.numpy(), expected_weights.numpy(), rtol=1e-4, atol=1e-5)
    assert np.isfinite(direction.numpy()).all() and np.isfinite(weights.numpy()).all()
    state = [v.numpy().copy() for v in agg.non_trainable_variables]
    for bad in (np.nan, np.inf, -np.inf):
        jac = finite.copy()
        jac[1, 7] = bad
        jac[2, 7] = -bad  # opposite infinities: -inf off the Gramian's diagonal
        direction, weights = solve(tf.constant(jac))
        assert direction.shape == (40,) and weights.shape == (3,)
        assert np.isnan(direction.numpy()).all() and np.isnan(weights.numpy()).all()
    # A non-finite batch is not applied, so it leaves stateful solvers
    # (NashMTL's step counter, GradVac's targets) as they were.
    for before, var in zip(state, agg.non_trainable_variables):
        np.testing.assert_array_equal(var.numpy(), before)


GRAMIAN_BASED = [n for n in NAMES if weighting.STRATEGIES[n].gramian_dtype is not None]


@pytest.mark.parametrize("name", GRAMIAN_BASED)
def test_gramian_weights_are_the_combination(name: str) -> None:
    """Methods whose weights come from `G = J J^T` alone give the same
    weights from the Gramian as from the Jacobian, and the solver passes
    over `J` only for the Gramian and the direction: its finiteness check
    reads the small Gramian."""
    jac = tf.constant(np.random.default_rng(2).normal(size=(4, 50)), tf.float32)
    agg = _make(name, 4)
    gram = tf.matmul(
        tf.cast(jac, agg.gramian_dtype), tf.cast(jac, agg.gramian_dtype), transpose_b=True
    )
    np.testing.assert_allclose(
        _make(name, 4).gramian_weights(gram, 50).numpy(),
        agg.combination(jac).numpy(),
        rtol=1e-5,
        atol=1e-6,
    )
    graph = (
        tf.function(_make(name, 4).solver())
        .get_concrete_function(tf.TensorSpec((4, 50), tf.float32))
        .graph
    )
    checked = [
        op.inputs[0].shape.as_list() for op in graph.get_operations() if op.type == "IsFinite"
    ]
    # The (4, 4) Gramian, or the trace of the float32 one (`well_conditioned`,
    # for the methods that try it first; their Gramian check is in the cond).
    assert checked and all(shape in ([4, 4], []) for shape in checked), checked


@pytest.mark.parametrize("mode", ["eager", "graph", "jit_solver"])
@pytest.mark.parametrize("name", GRAMIAN_BASED)
def test_an_overflowing_float32_gramian_is_not_finite(name: str, mode: str) -> None:
    """Finite rows so large that their float32 Gramian overflows give NaN
    (which the model's contracts name), not a solve on infinities."""
    jac = np.random.default_rng(3).normal(size=(3, 40)).astype("float32") * 1e20
    agg = _make(name, 3)
    agg.jit_solver = mode == "jit_solver"
    solve = tf.function(agg.solver()) if mode == "graph" else agg.solver()
    direction, weights = solve(tf.constant(jac))
    if weighting.STRATEGIES[name].gramian_dtype == tf.float64:
        assert np.isfinite(weights.numpy()).all()
    else:
        assert np.isnan(weights.numpy()).all() and np.isnan(direction.numpy()).all()


def test_a_custom_aggregator_needs_only_gramian_weights() -> None:
    """A subclass that implements `gramian_weights` trains with `fit`, and
    its weights are logged."""

    class InverseNorm(weighting.GradientAggregator):
        gramian_dtype = tf.float32

        def gramian_weights(self, gram, num_columns):
            return 1.0 / tf.sqrt(tf.linalg.diag_part(gram) + 1e-12)

    jac = tf.constant([[3.0, 4.0], [0.0, 2.0]])
    direction, weights = InverseNorm().direction_and_weights(jac)
    np.testing.assert_allclose(weights.numpy(), [0.2, 0.5], rtol=1e-5)
    np.testing.assert_allclose(direction.numpy(), [0.6, 1.8], rtol=1e-5)
    import keras

    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = {"a": x[:, 0], "b": x[:, 1] - x[:, 2]}
    model = mk.builders.shared_bottom(
        keras.Input((4,), name="x"), [mk.Regression("a"), mk.Regression("b")], trunk_units=(8,)
    )
    model.compile(keras.optimizers.SGD(0.05), weighting=InverseNorm())
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert history.history["a_weight"][-1] > 0 and history.history["b_weight"][-1] > 0


def test_an_overridden_combination_is_what_the_solver_runs() -> None:
    """A subclass of a Gramian-based aggregator that overrides `combination`
    is solved through its override, not through the parent's Gramian path."""

    class FirstTaskOnly(weighting.UPGrad):
        def combination(self, jacobian):
            return tf.one_hot(0, int(jacobian.shape[0]))

    jac = tf.constant([[1.0, 2.0], [-3.0, 1.0]])
    direction, weights = FirstTaskOnly().solver()(jac)
    np.testing.assert_allclose(weights.numpy(), [1.0, 0.0])
    np.testing.assert_allclose(direction.numpy(), [1.0, 2.0])


@pytest.mark.parametrize("name", NAMES)
def test_the_jit_solver_compiles_the_small_solve_only(name: str) -> None:
    """With `jit_solver` (a step without XLA on CPU) a Gramian-based method
    hands XLA the `(T, T)` Gramian only: the passes over the Jacobian (its
    Gramian, the direction) stay on TensorFlow's kernels, which were ~40x
    faster than XLA's CPU dot on a `(3, 65,536)` Jacobian. Other methods
    compile their whole solver."""
    agg = _make(name, 4)
    agg.jit_solver = True
    graph = (
        tf.function(agg.solver()).get_concrete_function(tf.TensorSpec((4, 50), tf.float32)).graph
    )
    compiled = [
        [i.shape.as_list() for i in op.inputs]
        for op in graph.get_operations()
        if "PartitionedCall" in op.type and op.get_attr("_XlaMustCompile")
    ]
    assert len(compiled) == 1, compiled
    if name in GRAMIAN_BASED:
        assert compiled[0][0] == [4, 4], compiled
    else:
        assert compiled[0][0] == [4, 50], compiled


def _dependent_rows(name: str) -> tuple[weighting.GradientAggregator, np.ndarray]:
    """A method whose answer hinges on a rank decision, and a Jacobian at it:
    ConFIG with a row that is the sum of the others (its pinv must cut the
    null space); CAGrad with c = 1 and 0 in the rows' convex hull (its
    direction must be zero)."""
    rng = np.random.default_rng(4)
    jac = rng.normal(size=(3, 400)).astype("float32")
    if name == "cagrad":
        agg = weighting.CAGrad(c=1.0)
        jac[2] = -(jac[0] + jac[1])
    else:
        agg = weighting.STRATEGIES[name]()
        jac[2] = jac[0] + jac[1]
    agg.build_for_tasks([mk.Regression(f"t{i}") for i in range(3)])
    return agg, jac


FLOAT32_FIRST = [
    n for n in GRAMIAN_BASED if weighting.STRATEGIES[n].float32_gramian_above is not None
]


@pytest.mark.parametrize("mode", ["eager", "graph", "jit_solver"])
@pytest.mark.parametrize("name", FLOAT32_FIRST)
def test_nearly_dependent_rows_are_solved_on_the_float64_gramian(name: str, mode: str) -> None:
    """Methods that solve on the float32 Gramian when it is well conditioned
    switch to the float64 one where their rank decisions need it: the
    solver then gives `combination`'s (float64) answer."""
    agg, jac = _dependent_rows(name)
    agg.jit_solver = mode == "jit_solver"
    solve = tf.function(agg.solver()) if mode == "graph" else agg.solver()
    direction, weights = solve(tf.constant(jac))
    expected = agg.combination(tf.constant(jac)).numpy()
    np.testing.assert_allclose(weights.numpy(), expected, rtol=1e-6, atol=1e-8)
    gram32 = tf.matmul(tf.constant(jac), tf.constant(jac), transpose_b=True)
    assert not bool(weighting._ops.well_conditioned(gram32, agg.float32_gramian_above))
    if name == "cagrad":
        np.testing.assert_allclose(direction.numpy(), 0.0, atol=1e-6)


@pytest.mark.parametrize("name", FLOAT32_FIRST)
def test_well_conditioned_rows_are_solved_on_the_float32_gramian(name: str) -> None:
    """The fast path: same weights as the float64 Gramian's to float32
    accuracy, and no float64 copy of J in the solve's taken branch."""
    jac = tf.constant(np.random.default_rng(5).normal(size=(3, 400)), tf.float32)
    agg = _make(name, 3)
    assert bool(weighting._ops.well_conditioned(tf.matmul(jac, jac, transpose_b=True), 1e-3))
    _, weights = agg.solver()(jac)
    np.testing.assert_allclose(weights.numpy(), agg.combination(jac).numpy(), rtol=1e-4)


@pytest.mark.parametrize("jit", [False, True], ids=["graph", "xla"])
def test_well_conditioned_reads_the_normalised_eigenvalues(jit: bool) -> None:
    check = tf.function(weighting._ops.well_conditioned, jit_compile=jit)
    basis, _ = np.linalg.qr(np.random.default_rng(6).normal(size=(4, 4)))
    for eigenvalues, expected in (
        ([1.0, 2.0, 3.0, 4.0], True),
        ([1.0, 1.0, 1.0, 5e-3], True),  # 5e-3 / 3.005 > 1e-3
        ([1.0, 1.0, 1.0, 2e-3], False),
        ([1.0, 1.0, 0.0, 0.0], False),
        ([0.0, 0.0, 0.0, 0.0], False),
    ):
        gram = (basis * eigenvalues) @ basis.T * 1e6  # scale does not matter
        assert bool(check(tf.constant(gram, tf.float32), 1e-3)) is expected, eigenvalues
    for bad in (np.nan, np.inf):
        gram = np.eye(4, dtype="float32")
        gram[1, 1] = bad
        assert not bool(check(tf.constant(gram), 1e-3))
