"""Embeddings of numeric features (Gorishniy et al., 2022, "On Embeddings for
Numerical Features in Tabular Deep Learning").

- `PiecewiseLinearEncoding`: each feature becomes one value per bin: 0 below
  the bin, 1 above it, linear inside it (bins from quantiles of the training
  data, `quantile_bin_edges`), optionally plus a learned embedding of the bin
  the value falls into.
- `PeriodicEmbedding` (PLR): `ReLU(Linear([sin(2πcx), cos(2πcx)]))` with
  learned frequencies `c` per feature.

Both take a `(batch, num_features)` float tensor (the `TabularEncoder` builds
it from raw named columns) and return `(batch, output_dim)`. Only element-wise
ops, gathers and matmuls: they export to SavedModel and convert to TFLite
builtins.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import keras
import numpy as np
from keras import ops


def quantile_bin_edges(values: Any, num_bins: int = 32, zero_heavy: float = 0.5) -> list[float]:
    """Bin edges at quantiles of `values` (NaNs ignored), duplicates removed.

    Columns where more than `zero_heavy` of the values are exactly 0 (amounts
    such as capital gains) get their quantiles from the non-zero values, with
    0 kept as an edge, so the bins resolve the part of the range that varies.

    Args:
        values: 1-D array of training values.
        num_bins: at most this many bins (`num_bins + 1` edges).
        zero_heavy: fraction of zeros above which zeros are binned apart.

    Returns:
        Sorted edges, at least two (a constant column gets `[v, v + 1]`).

    Example:
    >>> quantile_bin_edges(np.arange(101.0), num_bins=4)
    [0.0, 25.0, 50.0, 75.0, 100.0]
    """
    x = np.asarray(values, dtype="float64").reshape(-1)
    x = x[np.isfinite(x)]
    if x.size == 0:
        raise ValueError("quantile_bin_edges: no finite values to bin.")
    if num_bins < 1:
        raise ValueError(f"quantile_bin_edges: num_bins must be >= 1, got {num_bins}.")
    nonzero = x[x != 0]
    if nonzero.size and (x.size - nonzero.size) / x.size > zero_heavy:
        q = np.quantile(nonzero, np.linspace(0, 1, num_bins))
        edges = np.unique(np.concatenate([[0.0, x.min(), x.max()], q]))
    else:
        edges = np.unique(np.quantile(x, np.linspace(0, 1, num_bins + 1)))
    if edges.size < 2:
        edges = np.array([edges[0], edges[0] + 1.0])
    return [float(e) for e in edges]


@keras.saving.register_keras_serializable(package="mtl_keras")
class PiecewiseLinearEncoding(keras.layers.Layer):
    """Piecewise-linear encoding of numeric features over fixed bins.

    Feature `j` with edges `b_0 < ... < b_k` becomes `k` values
    `clip((x - b_{t-1}) / (b_t - b_{t-1}), 0, 1)`, so the next Dense layer sees
    a monotone, piecewise-linear basis of each feature. With
    `bin_embedding_dim > 0` a learned vector of the bin `x` falls into is
    appended per feature (a categorical view of the same number).

    Args:
        bin_edges: one list of sorted edges per input column (>= 2 each).
        bin_embedding_dim: size of the per-feature bin embedding (0: none).

    Example:
    >>> ple = PiecewiseLinearEncoding([[0.0, 1.0, 2.0], [0.0, 10.0]])
    >>> ple(np.array([[1.5, 5.0]], "float32")).numpy().tolist()
    [[1.0, 0.5, 0.5]]
    """

    def __init__(
        self, bin_edges: Sequence[Sequence[float]], bin_embedding_dim: int = 0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.bin_edges = [[float(e) for e in edges] for edges in bin_edges]
        if not self.bin_edges:
            raise ValueError("PiecewiseLinearEncoding needs the edges of at least one feature.")
        for j, edges in enumerate(self.bin_edges):
            if len(edges) < 2 or np.any(np.diff(edges) <= 0):
                raise ValueError(
                    f"PiecewiseLinearEncoding: edges of feature {j} must be >= 2 strictly "
                    f"increasing values, got {edges}."
                )
        self.bin_embedding_dim = int(bin_embedding_dim)
        # Padded (features, max_bins) tables; padded bins are dropped by `_keep`.
        counts = [len(e) - 1 for e in self.bin_edges]
        width = max(counts)
        lower = np.zeros((len(counts), width), "float32")
        scale = np.zeros((len(counts), width), "float32")
        for j, edges in enumerate(self.bin_edges):
            e = np.asarray(edges, "float64")
            lower[j, : counts[j]] = e[:-1]
            scale[j, : counts[j]] = 1.0 / np.diff(e)
        self._lower, self._scale = lower, scale
        self._keep = np.concatenate([j * width + np.arange(c) for j, c in enumerate(counts)])
        self._inner = [np.asarray(e[1:-1], "float32") for e in self.bin_edges]
        self._offsets = np.cumsum([0, *counts[:-1]]).astype("int32")
        self.num_bins = counts
        self.bin_embedding = None
        if self.bin_embedding_dim:
            self.bin_embedding = keras.layers.Embedding(
                sum(counts), self.bin_embedding_dim, name="bin_embedding"
            )

    def build(self, input_shape: Any) -> None:
        if input_shape[-1] is not None and input_shape[-1] != len(self.bin_edges):
            raise ValueError(
                f"PiecewiseLinearEncoding has edges for {len(self.bin_edges)} features, "
                f"got inputs with {input_shape[-1]} columns."
            )
        if self.bin_embedding is not None:
            self.bin_embedding.build((None, len(self.bin_edges)))
        self.built = True

    @property
    def input_dtype(self) -> str:
        """float32 under any dtype policy: raw numeric features must not be
        autocast to float16 (values above 65504 overflow, precision is lost)."""
        return "float32"

    def bin_index(self, x: Any) -> Any:
        """Bin of each value, `(batch, features)` int32 in `[0, num_bins_j)`."""
        cols = []
        for j, inner in enumerate(self._inner):
            xj = x[:, j : j + 1]
            if inner.size:
                cols.append(ops.sum(ops.cast(xj >= inner[None, :], "int32"), axis=-1))
            else:
                cols.append(ops.zeros_like(ops.cast(xj[:, 0], "int32")))
        return ops.stack(cols, axis=-1)

    def call(self, x: Any) -> Any:
        x = ops.cast(x, "float32")
        e = ops.clip((x[:, :, None] - self._lower) * self._scale, 0.0, 1.0)
        flat = ops.reshape(e, (-1, self._lower.size))
        parts = [ops.take(flat, self._keep, axis=1)]
        if self.bin_embedding is not None:
            idx = self.bin_index(x) + self._offsets
            emb = self.bin_embedding(idx)
            parts.append(ops.reshape(emb, (-1, len(self.bin_edges) * self.bin_embedding_dim)))
        return ops.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]

    @property
    def output_dim(self) -> int:
        return sum(self.num_bins) + len(self.bin_edges) * self.bin_embedding_dim

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (input_shape[0], self.output_dim)

    def compute_output_spec(self, x: Any) -> Any:
        # float32 encoding (a float16 bin embedding is promoted to it).
        return keras.KerasTensor(self.compute_output_shape(x.shape), dtype="float32")

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "bin_edges": self.bin_edges,
            "bin_embedding_dim": self.bin_embedding_dim,
        }


@keras.saving.register_keras_serializable(package="mtl_keras")
class PeriodicEmbedding(keras.layers.Layer):
    """PLR embedding: `ReLU(W_j [sin(2π c_j x_j), cos(2π c_j x_j)] + b_j)`.

    Each of the `num_features` inputs (standardized values work best) gets
    `num_frequencies` learned frequencies initialised from `N(0, sigma)` and
    its own linear map to `embedding_dim`; the result is flattened to
    `(batch, num_features * embedding_dim)`.

    Args:
        num_features: number of input columns.
        num_frequencies: frequencies per feature.
        embedding_dim: output size per feature.
        sigma: initial frequency scale (the paper tunes it; 0.1-1 for
            standardized inputs).

    Example:
    >>> plr = PeriodicEmbedding(num_features=2, num_frequencies=4, embedding_dim=3)
    >>> tuple(plr(np.zeros((5, 2), "float32")).shape)
    (5, 6)
    """

    def __init__(
        self,
        num_features: int,
        num_frequencies: int = 16,
        embedding_dim: int = 16,
        sigma: float = 0.5,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        for arg, value in (("num_features", num_features), ("num_frequencies", num_frequencies),
                           ("embedding_dim", embedding_dim)):  # fmt: skip
            if int(value) < 1:
                raise ValueError(f"PeriodicEmbedding: `{arg}` must be >= 1, got {value}.")
        if sigma <= 0:
            raise ValueError(f"PeriodicEmbedding: `sigma` must be > 0, got {sigma}.")
        self.num_features = int(num_features)
        self.num_frequencies = int(num_frequencies)
        self.embedding_dim = int(embedding_dim)
        self.sigma = float(sigma)

    @property
    def input_dtype(self) -> str:
        """float32 under any dtype policy: raw numeric features must not be
        autocast to float16 (values above 65504 overflow, precision is lost)."""
        return "float32"

    def build(self, input_shape: Any) -> None:
        if input_shape[-1] is not None and input_shape[-1] != self.num_features:
            raise ValueError(
                f"PeriodicEmbedding expects {self.num_features} columns, got {input_shape[-1]}."
            )
        f, k, d = self.num_features, self.num_frequencies, self.embedding_dim
        self.frequencies = self.add_weight(
            name="frequencies", shape=(f, k),
            initializer=keras.initializers.RandomNormal(stddev=self.sigma),
        )  # fmt: skip
        self.kernel = self.add_weight(
            name="kernel", shape=(f, 2 * k, d), initializer="glorot_uniform"
        )
        self.bias = self.add_weight(name="bias", shape=(f, d), initializer="zeros")
        self.built = True

    def call(self, x: Any) -> Any:
        if x.shape[-1] is not None and x.shape[-1] != self.num_features:
            raise ValueError(
                f"PeriodicEmbedding expects {self.num_features} columns, got {x.shape[-1]}."
            )
        # float32 throughout, also under mixed precision: sin/cos of large
        # arguments lose their phase in float16.
        frequencies, kernel, bias = (
            ops.cast(w, "float32") for w in (self.frequencies, self.kernel, self.bias)
        )
        v = 2 * math.pi * ops.cast(x, "float32")[:, :, None] * frequencies
        periodic = ops.concatenate([ops.sin(v), ops.cos(v)], axis=-1)  # (b, f, 2k)
        out = ops.einsum("bfk,fkd->bfd", periodic, kernel) + bias
        return ops.reshape(ops.relu(out), (-1, self.num_features * self.embedding_dim))

    @property
    def output_dim(self) -> int:
        return self.num_features * self.embedding_dim

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (input_shape[0], self.output_dim)

    def compute_output_spec(self, x: Any) -> Any:
        return keras.KerasTensor(self.compute_output_shape(x.shape), dtype="float32")

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_features": self.num_features,
            "num_frequencies": self.num_frequencies,
            "embedding_dim": self.embedding_dim,
            "sigma": self.sigma,
        }
