"""Small linear-algebra routines shared by the gradient aggregators.

Everything here traces under `tf.function(jit_compile=True)`: shapes depend on
the (static) number of tasks only and loops are unrolled in Python or are
`tf.while_loop`s. The tiny `(tasks, tasks)` problems are solved in float64
because the Gramians they start from are ill-conditioned (e.g. two nearly
identical task gradients); the `(tasks, params)` products stay float32.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

#: float32 machine epsilon, used by the rank cut-offs: the Gramian is only
#: float32-accurate, whatever precision the small solve uses afterwards.
EPS32 = float(np.finfo(np.float32).eps)

#: cap on the dual-cone pivoting solves, times the number of tasks
_PIVOT_MAX_ITER = 10
#: block flips allowed without progress before single flips (`pivot_flips`)
PIVOT_TRIES = 3


def static_num_tasks(jacobian: Any, who: str) -> int:
    m = jacobian.shape[0]
    if m is None:
        raise ValueError(f"{who}: the number of tasks (first dimension) must be static.")
    return int(m)


def num_columns(matrix: Any) -> Any:
    """The number of columns of a 2-D tensor: a Python int when static."""
    n = matrix.shape[1]
    return int(n) if n is not None else tf.shape(matrix)[1]


def _in_xla_context() -> bool:
    """Whether ops are being traced for XLA (`tf.function(jit_compile=True)`)."""
    try:
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # pragma: no cover - private module moved
        return False
    return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))


def gramian(jacobian: Any, dtype: Any = None) -> Any:
    """`J J^T` (num_tasks, num_tasks), in the Jacobian's dtype or `dtype`.

    `dtype=tf.float64` for rank decisions: a float32 Gramian carries
    rounding noise of ~1e-8 of its largest eigenvalue, which swamps the
    (eps32)^2-small eigenvalues of linearly dependent float32 rows.
    """
    if dtype is not None:
        jacobian = tf.cast(jacobian, dtype)
    m = jacobian.shape[0]
    if m is not None and m < 4 and _in_xla_context():
        # XLA's CPU dot is 2-4x slower for 2 or 3 rows than for 4 (measured
        # with 65k-133k columns): pad with zero rows, then drop them.
        padded = tf.pad(jacobian, [[0, 4 - m], [0, 0]])
        return tf.matmul(padded, padded, transpose_b=True)[:m, :m]
    return tf.matmul(jacobian, jacobian, transpose_b=True)


def combine(weights: Any, jacobian: Any) -> Any:
    """`w^T J`: the aggregated (num_params,) direction, in the Jacobian's dtype."""
    return tf.linalg.matvec(jacobian, tf.cast(weights, jacobian.dtype), transpose_a=True)


def normalize_gramian(gram: Any, eps: float) -> Any:
    """`G / tr(G)` (the Gramian of `J / ||J||_F`), or zeros when `tr(G) < eps`."""
    trace = tf.linalg.trace(gram)
    safe = tf.where(trace < eps, tf.ones_like(trace), trace)
    return tf.where(trace < eps, tf.zeros_like(gram), gram / safe)


def principal_system(gram: Any, free: Any) -> Any:
    """`G_FF` on the indices where `free` (..., m) is 1, the identity elsewhere:
    solving with it gives a vector that is zero off F (`(..., m, m)`)."""
    f_col, f_row = free[..., :, None], free[..., None, :]
    eye = tf.eye(int(gram.shape[-1]), dtype=gram.dtype)
    return f_col * gram * f_row + eye * (1.0 - f_col)


def _eliminate(a: Any, m: int) -> tuple[Any, list[Any]]:
    """Gauss-Jordan elimination of the first m columns of `a` (..., m, k),
    unrolled over the static m, without pivoting: (the reduced matrix, the
    m pivots). Each step is a few elementwise ops that XLA fuses; XLA's
    Cholesky and LU are loops of small kernels, which made the dual-cone
    solve of UPGrad cost ~0.2 ms per step on an (8, 8) Gramian on CPU."""
    pivots = []
    for j in range(m):
        pivot = a[..., j : j + 1, j : j + 1]
        pivots.append(pivot[..., 0, 0])
        row = a[..., j : j + 1, :] / pivot
        # Row j becomes `row`; every other row i loses a_ij * row.
        col = a[..., :, j : j + 1] - tf.one_hot(j, m, dtype=a.dtype)[:, None]
        a = a - col * row
    return a, pivots


def spd_solve(system: Any, rhs: Any) -> Any:
    """Solves `system @ x = rhs` for symmetric positive definite `system`
    `(..., m, m)` and `rhs` `(..., m, r)` by unrolled Gauss-Jordan
    elimination: no pivoting is needed for a positive definite system
    (every leading pivot is positive). A singular system gives non-finite
    entries (not an error)."""
    m = int(system.shape[-1])
    reduced, _ = _eliminate(tf.concat([system, tf.cast(rhs, system.dtype)], axis=-1), m)
    return reduced[..., :, m:]


def well_conditioned(gram: Any, floor: float) -> Any:
    """Whether every eigenvalue of the trace-normalised `gram` (symmetric,
    `(m, m)`) exceeds `floor`, as a boolean scalar; False for a zero or
    non-finite `gram`.

    `G / tr(G) - floor I` is positive definite exactly when all pivots of its
    elimination are positive (Sylvester's criterion): cheap under XLA and
    never an error (unlike a failing Cholesky).
    """
    m = int(gram.shape[-1])
    g = tf.cast(gram, tf.float64)
    trace = tf.linalg.trace(g)
    usable = tf.logical_and(tf.math.is_finite(trace), trace > 0)
    shifted = g / tf.where(usable, trace, 1.0) - floor * tf.eye(m, dtype=tf.float64)
    _, pivots = _eliminate(shifted, m)
    return tf.logical_and(usable, tf.reduce_all(tf.stack(pivots) > 0))  # False for NaN


def pivot_flips(bad: Any, best: Any, tries: Any) -> tuple[Any, Any, Any, Any]:
    """The flip rule of block principal pivoting (Judice & Pires 1994).

    `bad` (..., m) marks the infeasible indices of the current guess. All of
    them are flipped while their count keeps falling below its best so far,
    or for `PIVOT_TRIES` more rounds after it stops falling; then only the
    largest infeasible index is (Murty's rule, which terminates).

    Returns:
        (flip mask, infeasible count, new best count, new tries left).
    """
    index = tf.range(bad.shape[-1])
    count = tf.reduce_sum(tf.cast(bad, tf.int32), axis=-1)
    better = count < best
    block = tf.logical_or(better, tries > 0)
    tries = tf.where(better, PIVOT_TRIES, tf.where(block, tries - 1, tries))
    largest = tf.reduce_max(tf.where(bad, index, -1), axis=-1, keepdims=True)
    flip = tf.where(block[..., None], bad, tf.equal(index, largest))
    return flip, count, tf.minimum(best, count), tries


def dual_cone_weights(gram: Any, targets: Any) -> Any:
    """Solves `min_v v^T G v  s.t.  v >= u` for every column u of `targets`.

    By Proposition 1 of Quinton & Rey (2024, "Jacobian Descent for
    Multi-Objective Optimization") `J^T v` is then the projection of `J^T u`
    onto the dual cone of the rows of J. G must be positive definite.

    With `v = u + s` the KKT conditions are the linear complementarity
    problem `s >= 0, y = G s + G u >= 0, s^T y = 0`, solved exactly by block
    principal pivoting (Judice & Pires 1994; Kim & Park 2011): guess the set
    F of constraints that are not tight (`s_F > 0`), solve `G_FF s_F = -(Gu)_F`,
    and flip every index whose `s` or `y` comes out negative (`pivot_flips`:
    all of them, or only the largest once that stops making progress —
    Murty's rule, which terminates for positive definite G). Starting from `F = {}` (v = u),
    non-conflicting targets finish in one solve, and a few solves of
    (m, m) systems usually suffice — far fewer than the 2**m active sets.
    All targets are solved as one batch in a `tf.while_loop`.

    Args:
        gram: (m, m) positive definite matrix, any float dtype.
        targets: (m, k) matrix of the vectors u.

    Returns:
        (m, k) float64 matrix of solutions.
    """
    m = int(gram.shape[0])
    k = int(targets.shape[1])
    gram = tf.cast(gram, tf.float64)
    targets = tf.cast(targets, tf.float64)
    q = tf.transpose(tf.matmul(gram, targets))  # (k, m): one problem per row
    tol = 1e-12 * (1.0 + tf.reduce_max(tf.abs(q)))

    def solve(free: Any) -> tuple[Any, Any]:
        system = principal_system(gram, free)  # (k, m, m)
        s = free * spd_solve(system, -(free * q)[:, :, None])[:, :, 0]
        y = (1.0 - free) * (tf.matmul(s, gram) + q)  # G symmetric
        return s, y

    def body(it: Any, free: Any, s: Any, best: Any, tries: Any, done: Any) -> tuple:
        s, y = solve(free)
        bad = tf.where(free > 0, s < -tol, y < -tol)
        flip, count, best, tries = pivot_flips(bad, best, tries)
        return it + 1, tf.where(flip, 1.0 - free, free), s, best, tries, count == 0

    def cond(it: Any, free: Any, s: Any, best: Any, tries: Any, done: Any) -> Any:
        return tf.logical_and(it < _PIVOT_MAX_ITER * m, tf.logical_not(tf.reduce_all(done)))

    # F = {} (v = u, s = 0, y = Gu) is already optimal for a problem whose
    # target conflicts with no row: then no solve is needed, and when that
    # holds for all of them (no conflict at all) the loop does not run.
    start = (
        tf.constant(0), tf.zeros([k, m], tf.float64), tf.zeros([k, m], tf.float64),
        tf.fill([k], m + 1), tf.fill([k], PIVOT_TRIES), tf.reduce_all(q >= -tol, axis=1),
    )  # fmt: skip
    # Once every problem is done the last solve was on the final sets (no
    # flips). Past the iteration cap (not met in tests), clipping keeps v >= u.
    s = tf.while_loop(cond, body, start)[2]
    return targets + tf.transpose(tf.maximum(s, 0.0))


def psd_pinv(gram: Any, rtol: float) -> Any:
    """Pseudo-inverse of a symmetric PSD matrix, float64.

    Eigenvalues below `rtol * max eigenvalue` count as zero; for `G = A A^T`
    this matches `pinv(A)` with relative singular-value cut-off `sqrt(rtol)`.
    """
    gram = tf.cast(gram, tf.float64)
    gram = 0.5 * (gram + tf.transpose(gram))
    lam, vec = tf.linalg.eigh(gram)
    cutoff = rtol * tf.maximum(tf.reduce_max(lam), 0.0)
    keep = lam > cutoff
    inv = tf.where(keep, 1.0 / tf.where(keep, lam, tf.ones_like(lam)), tf.zeros_like(lam))
    return tf.matmul(vec * inv[None, :], vec, transpose_b=True)


def project_simplex(y: Any) -> Any:
    """Euclidean projection of a vector onto the probability simplex (sort-based)."""
    m = int(y.shape[-1])
    srt = tf.sort(y, direction="DESCENDING")
    cssv = tf.cumsum(srt) - 1.0
    ind = tf.range(1, m + 1, dtype=y.dtype)
    cond = srt - cssv / ind > 0
    rho = tf.reduce_max(tf.where(cond, tf.range(m), tf.zeros([m], tf.int32)))
    theta = tf.gather(cssv, rho) / tf.cast(rho + 1, y.dtype)
    return tf.maximum(y - theta, 0.0)


def visiting_orders(num_tasks: int, keys: Any | None) -> Any:
    """(m, m) int32: row i lists task indices in the order task i visits them.

    With `keys` (random (m, m) floats) the order is `argsort(keys[i])`, a
    uniformly random permutation per row; without, it is 0..m-1. Index i
    itself appears in row i and is skipped by the callers.
    """
    if keys is None:
        return tf.tile(tf.range(num_tasks)[None, :], [num_tasks, 1])
    return tf.argsort(keys, axis=1, stable=True)


def make_rng_state(layer: Any, seed: int | None, name: str) -> Any:
    """A (2,) int64 Keras variable `[seed, counter]` for stateless draws.

    A plain layer weight (unlike a `keras.random.SeedGenerator`) is saved in
    `.keras` files with the layer's other variables, so a reloaded model
    continues the same random sequence. Every replica computes the same
    aggregation, hence `only_first_replica`.
    """
    if seed is None:
        seed = int(np.random.randint(1, 2**31 - 1))
    return layer.add_weight(
        name=name,
        shape=(2,),
        dtype="int64",
        initializer=lambda shape, dtype=None: tf.constant([int(seed), 0], tf.int64),
        trainable=False,
        aggregation="only_first_replica",
    )


def draw_uniform(state: Any, shape: Any) -> Any:
    """U(0, 1) float32 draws from `state`, then advances the counter.

    Under XLA the counter-based ThreeFry generator is used: with a run-time
    seed, XLA's CPU Philox cost ~35 ms per step for the 130k draws GradDrop
    makes on the benchmark MLP (one per shared parameter), ThreeFry < 1 ms. TensorFlow's
    non-XLA kernels only implement Philox, so the stream (not its
    distribution) depends on `jit_compile`.
    """
    alg = "threefry" if _in_xla_context() else "philox"
    values = tf.random.stateless_uniform(shape, seed=tf.convert_to_tensor(state), alg=alg)
    state.assign_add(tf.constant([0, 1], tf.int64))
    return values


def preference(pref_vector: list[float] | None, m: int, who: str) -> Any:
    """The preference weights as a float64 (m,) tensor (default 1/m)."""
    if pref_vector is None:
        return tf.fill([m], tf.constant(1.0 / m, tf.float64))
    if len(pref_vector) != m:
        raise ValueError(f"{who}: `pref_vector` has {len(pref_vector)} entries for {m} tasks.")
    return tf.constant(pref_vector, tf.float64)
