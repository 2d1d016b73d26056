"""torchjd's property-test matrices, ported to NumPy (issue #13, item 12).

A port of torchjd's `tests/unit/aggregation/_matrix_samplers.py` and
`_inputs.py` (TorchJD/torchjd, MIT licence): random matrices of a given
shape and rank, strongly stationary ones (`v^T A = 0` for some `v > 0`),
strictly weakly stationary ones and non-weakly-stationary ones, plus the
`normal` matrices times scales 0, 1e-10 ... 1e15. The samples differ from
torchjd's (NumPy's generator, not torch's), the distributions are the same.
No torch needed.
"""

from __future__ import annotations

import numpy as np

NORMAL_DIMS = [(1, 1, 1), (4, 3, 1), (4, 3, 2), (4, 3, 3), (9, 11, 5), (9, 11, 9)]
ZERO_DIMS = [(1, 1), (4, 3), (9, 11)]
STATIONARITY_DIMS = [(20, 10, 10), (20, 10, 5), (20, 10, 1), (20, 100, 1), (20, 100, 19)]
SCALES = [0.0, 1e-10, 1e3, 1e5, 1e10, 1e15]


def _complement(q: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random (m, m - k) semi-orthonormal matrix orthogonal to q (m, k)."""
    m, k = q.shape
    a = rng.normal(size=(m, m - k))
    a = a - q @ (q.T @ a)
    return np.linalg.qr(a)[0]


def _orthonormal(dim: int, rng: np.random.Generator) -> np.ndarray:
    return _complement(np.zeros((dim, 0)), rng)


def _singular(rank: int, rng: np.random.Generator) -> np.ndarray:
    return np.diag(np.abs(rng.normal(size=rank)))


def normal(m: int, n: int, rank: int, rng: np.random.Generator) -> np.ndarray:
    u, vt = _orthonormal(m, rng), _orthonormal(n, rng)
    return u[:, :rank] @ _singular(rank, rng) @ vt[:rank]


def strong(m: int, n: int, rank: int, rng: np.random.Generator) -> np.ndarray:
    """`v^T A = 0` for a positive v: zero is a positive combination of the rows."""
    v = np.abs(rng.normal(size=m))
    u1 = (v / np.linalg.norm(v))[:, None]
    u2 = _complement(u1, rng)
    vt = _orthonormal(n, rng)
    return u2[:, :rank] @ _singular(rank, rng) @ vt[:rank]


def strictly_weak(m: int, n: int, rank: int, rng: np.random.Generator) -> np.ndarray:
    """Weakly but not strongly stationary (`v^T A = 0` only for some v >= 0)."""
    u = np.abs(rng.normal(size=m))
    split = int(rng.integers(1, m))
    order = rng.permutation(m)
    v, v_prime = np.zeros(m), np.zeros(m)
    v[order[:split]] = u[order[:split]] / np.linalg.norm(u[order[:split]])
    v_prime[order[split:]] = u[order[split:]] / np.linalg.norm(u[order[split:]])
    u1 = np.stack([v, v_prime]).T
    full = np.hstack([u1, _complement(u1, rng)])
    vt = _orthonormal(n, rng)
    return full[:, 1 : rank + 1] @ _singular(rank, rng) @ vt[:rank]


def non_weak(m: int, n: int, rank: int, rng: np.random.Generator) -> np.ndarray:
    """No non-negative non-zero v has `v^T A = 0`."""
    u = np.abs(rng.normal(size=m))
    u1 = (u / np.linalg.norm(u))[:, None]
    full = np.hstack([u1, _complement(u1, rng)])
    vt = _orthonormal(n, rng)
    return full[:, :rank] @ _singular(rank, rng) @ vt[:rank]


def _as32(mats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.astype(np.float32) for k, v in mats.items()}


def _build() -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    normals = {f"normal_{m}x{n}r{r}": normal(m, n, r, rng) for m, n, r in NORMAL_DIMS}
    zeros = {f"zero_{m}x{n}": np.zeros((m, n)) for m, n in ZERO_DIMS}
    strongs = {f"strong_{m}x{n}r{r}": strong(m, n, r, rng) for m, n, r in STATIONARITY_DIMS}
    weak = {
        f"strictly_weak_{m}x{n}r{r}": strictly_weak(m, n, r, rng) for m, n, r in STATIONARITY_DIMS
    }
    non = {f"non_weak_{m}x{n}r{r}": non_weak(m, n, r, rng) for m, n, r in STATIONARITY_DIMS}
    scaled = {f"{k}*{s:g}": s * v for s in SCALES for k, v in normals.items()}
    return {
        "typical": _as32({**zeros, **normals, **strongs, **weak, **non}),
        "non_strong": _as32({**weak, **non}),
        "scaled": _as32(scaled),
    }


MATRICES = _build()


def group(name: str, min_rows: int = 1) -> dict[str, np.ndarray]:
    """`typical`, `non_strong` or `scaled` matrices with at least `min_rows` rows."""
    return {k: v for k, v in MATRICES[name].items() if v.shape[0] >= min_rows}
