"""Raw tabular features -> one dense vector, inside the model.

Keeping the preprocessing in the model means an exported SavedModel takes raw
features (strings and numbers) and nothing has to be replicated at serving
time.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Mapping, Sequence

import keras
import numpy as np
from keras import ops

from mtl_keras.layers._frozen import keep_frozen
from mtl_keras.layers.numeric_embeddings import (
    PeriodicEmbedding,
    PiecewiseLinearEncoding,
    quantile_bin_edges,
)
from mtl_keras.layers.target_bins import target_arrays, target_bin_edges

NUMERIC_ENCODINGS = ("standardize", "piecewise_linear", "periodic")
#: How `TabularEncoder.adapt` places piecewise-linear bins.
BINNINGS = ("quantile", "target")


def auto_embedding_dim(vocab_size: int) -> int:
    """A common rule of thumb (fast.ai): 1.6 * n^0.56, capped at 32."""
    return int(min(32, max(2, round(1.6 * vocab_size**0.56))))


@keras.saving.register_keras_serializable(package="mtl_keras")
class TabularEncoder(keras.layers.Layer):
    """Embeds categorical features and encodes numeric ones.

    Call it on a dict of raw feature tensors of shape `(batch,)`; it returns
    the concatenation of one embedding per categorical feature and the
    encoded numeric features, `(batch, output_dim)`. Unknown categories
    map to a shared out-of-vocabulary embedding.

    Numeric features are standardized (`numeric_encoding="standardize"`),
    or embedded (Gorishniy et al., 2022): `"piecewise_linear"` encodes each
    one over quantile bins, or target-aware bins from a decision tree on
    the labels (`adapt(..., bins="target")`), with `PiecewiseLinearEncoding`
    (optionally with a learned embedding of its bin, `bin_embedding_dim`);
    `"periodic"` uses PLR (`PeriodicEmbedding`) on the standardized value.

    Fit the vocabularies, statistics and bins with
    `TabularEncoder.adapt(data, ...)` (a dict of 1-D arrays, or a
    `tf.data.Dataset` read up to `max_rows`); they are stored in the config,
    so the layer round-trips through `.keras` files and SavedModel export.

    Args:
        vocabularies: dict categorical feature -> list of known values
            (strings or integers).
        numeric_stats: dict numeric feature -> (mean, std).
        embedding_dim: int, or None for a size-dependent default.
        log_features: numeric features transformed with `sign(x) *
            log1p(|x|)` before standardization (heavy-tailed amounts).
        numeric_encoding: one of `NUMERIC_ENCODINGS`.
        bin_edges: dict numeric feature -> sorted bin edges (on the
            log-transformed value for `log_features`); required for
            `"piecewise_linear"`, computed by `adapt`.
        bin_embedding_dim: size of the learned per-feature bin embedding
            added to the piecewise-linear encoding (0: none).
        periodic: keyword arguments of `PeriodicEmbedding`
            (`num_frequencies`, `embedding_dim`, `sigma`).

    Example:
    >>> import numpy as np
    >>> data = {"city": np.array(["a", "b", "a"]), "age": np.array([20., 30., 40.])}
    >>> enc = TabularEncoder.adapt(data, categorical=["city"], numeric=["age"])
    >>> tuple(enc({k: keras.ops.convert_to_tensor(v) for k, v in data.items()}).shape)
    (3, 4)
    """

    def __init__(
        self,
        vocabularies: Mapping[str, Sequence[Any]] | None = None,
        numeric_stats: Mapping[str, Sequence[float]] | None = None,
        embedding_dim: int | None = None,
        log_features: Sequence[str] = (),
        numeric_encoding: str = "standardize",
        bin_edges: Mapping[str, Sequence[float]] | None = None,
        bin_embedding_dim: int = 0,
        periodic: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.vocabularies = {k: list(v) for k, v in (vocabularies or {}).items()}
        self.numeric_stats = {k: [float(s) for s in v] for k, v in (numeric_stats or {}).items()}
        if not self.vocabularies and not self.numeric_stats:
            raise ValueError("TabularEncoder needs at least one categorical or numeric feature.")
        for name, stats in self.numeric_stats.items():
            if len(stats) != 2 or stats[1] <= 0:
                raise ValueError(
                    f"TabularEncoder: numeric_stats[{name!r}] must be (mean, std > 0), got {stats}."
                )
        unknown = set(log_features) - set(self.numeric_stats)
        if unknown:
            raise ValueError(
                f"TabularEncoder: log_features {sorted(unknown)} are not numeric features."
            )
        self.embedding_dim = embedding_dim
        self.log_features = list(log_features)
        if numeric_encoding not in NUMERIC_ENCODINGS:
            raise ValueError(
                f"TabularEncoder: numeric_encoding must be one of {NUMERIC_ENCODINGS}, "
                f"got {numeric_encoding!r}."
            )
        self.numeric_encoding = numeric_encoding
        self.bin_edges = {k: [float(e) for e in v] for k, v in (bin_edges or {}).items()}
        self.bin_embedding_dim = int(bin_embedding_dim)
        self.periodic = dict(periodic or {})
        self.numeric_embedding: keras.layers.Layer | None = None
        if self.numeric_stats and numeric_encoding == "piecewise_linear":
            missing = [f for f in self.numeric_stats if f not in self.bin_edges]
            if missing:
                raise ValueError(
                    f"TabularEncoder: piecewise_linear needs bin_edges for numeric features "
                    f"{missing} (fit them with TabularEncoder.adapt)."
                )
            self.numeric_embedding = PiecewiseLinearEncoding(
                [self.bin_edges[f] for f in self.numeric_stats],
                bin_embedding_dim=self.bin_embedding_dim,
                name="piecewise_linear",
            )
        elif self.numeric_stats and numeric_encoding == "periodic":
            self.numeric_embedding = PeriodicEmbedding(
                len(self.numeric_stats), **self.periodic, name="periodic"
            )
        extra = set(self.bin_edges) - set(self.numeric_stats)
        if extra:
            raise ValueError(f"TabularEncoder: bin_edges for non-numeric features {sorted(extra)}.")
        self.lookups: dict[str, keras.layers.Layer] = {}
        self.embeddings: dict[str, keras.layers.Layer] = {}
        for name, vocab in self.vocabularies.items():
            if not vocab:
                raise ValueError(f"TabularEncoder: empty vocabulary for feature {name!r}.")
            is_int = all(isinstance(v, (int, np.integer)) for v in vocab)
            lookup_cls = keras.layers.IntegerLookup if is_int else keras.layers.StringLookup
            self.lookups[name] = lookup_cls(vocabulary=vocab, name=f"lookup_{name}")
            dim = embedding_dim or auto_embedding_dim(len(vocab) + 1)
            self.embeddings[name] = keras.layers.Embedding(
                len(vocab) + 1, dim, name=f"embedding_{name}"
            )

    # ------------------------------------------------------------------ fitting
    @classmethod
    def adapt(
        cls,
        data: Mapping[str, Any],
        categorical: Sequence[str] = (),
        numeric: Sequence[str] = (),
        min_count: int = 1,
        max_tokens: int | None = None,
        num_bins: int = 32,
        max_rows: int | None = 1_000_000,
        bins: str = "quantile",
        targets: Mapping[str, Any] | Any | None = None,
        min_bin_rows: int = 64,
        **kwargs: Any,
    ) -> TabularEncoder:
        """Builds an encoder from training data.

        Args:
            data: dict feature -> 1-D array, or a `tf.data.Dataset` of
                feature dicts or `(features, labels[, weights])` batches, read
                until `max_rows` rows (shuffle it first so those rows are a
                sample).
            categorical, numeric: feature names of each kind.
            min_count: categories seen fewer times go to the OOV bucket.
            max_tokens: keep at most this many most frequent values.
            num_bins: at most this many bins per numeric feature
                (piecewise_linear).
            max_rows: rows read from a dataset (None: all of it).
            bins: `"quantile"` (`quantile_bin_edges`) or `"target"`: the
                split thresholds of a tree grown on each numeric feature
                against the labels of all tasks (`target_bin_edges`; needs
                `numeric_encoding="piecewise_linear"`).
            targets: for `bins="target"`, the labels, one row per data row: a
                dict task -> array, or one array (NaN: a missing label).
                Default for a dataset of `(features, labels[, weights])`:
                its labels (rows read alongside the features).
            min_bin_rows: for `bins="target"`, fewest training rows per bin.
            **kwargs: constructor arguments (`numeric_encoding`,
                `log_features`, `bin_embedding_dim`, ...).

        Example:
        >>> data = {"n": np.arange(100.0)}
        >>> enc = TabularEncoder.adapt(data, numeric=["n"],
        ...                            numeric_encoding="piecewise_linear", num_bins=4)
        >>> enc.bin_edges["n"]
        [0.0, 24.75, 49.5, 74.25, 99.0]
        >>> labels = {"big": (data["n"] >= 70).astype("float32")}
        >>> enc = TabularEncoder.adapt(data, numeric=["n"], numeric_encoding="piecewise_linear",
        ...                            bins="target", targets=labels, min_bin_rows=10)
        >>> enc.bin_edges["n"]
        [0.0, 69.5, 99.0]
        """
        if bins not in BINNINGS:
            raise ValueError(
                f"TabularEncoder.adapt: `bins` must be one of {BINNINGS}, got {bins!r}."
            )
        target_bins = bins == "target"
        if target_bins and kwargs.get("numeric_encoding") != "piecewise_linear":
            raise ValueError(
                "TabularEncoder.adapt: bins='target' places piecewise-linear bins; pass "
                "numeric_encoding='piecewise_linear' (got "
                f"{kwargs.get('numeric_encoding', 'standardize')!r})."
            )
        if targets is not None and not target_bins:
            raise ValueError(
                "TabularEncoder.adapt: `targets` are only used with bins='target' "
                f"(got bins={bins!r})."
            )
        if not isinstance(data, Mapping):
            want_labels = target_bins and targets is None
            data, labels = _collect_rows(data, [*categorical, *numeric], max_rows, want_labels)
            targets = labels if want_labels else targets
        missing = [f for f in [*categorical, *numeric] if f not in data]
        if missing:
            raise ValueError(f"TabularEncoder.adapt: features {missing} are not in the data.")
        if target_bins and numeric:
            if targets is None:
                raise ValueError(
                    "TabularEncoder.adapt: bins='target' needs `targets` (the labels: a dict "
                    "task -> array, or one array), or a dataset of (features, labels) batches."
                )
            rows = len(np.asarray(data[numeric[0]]).reshape(-1))
            target_arrays(targets, rows, "TabularEncoder.adapt")  # errors name the task
        vocabularies = {}
        for name in categorical:
            values = np.asarray(data[name]).reshape(-1)
            counts = Counter(values.tolist())
            kept = [v for v, c in counts.most_common(max_tokens) if c >= min_count]
            vocabularies[name] = sorted(kept, key=lambda v: (-counts[v], str(v)))
        stats, edges = {}, {}
        log_features = set(kwargs.get("log_features", ()))
        for name in numeric:
            values = np.asarray(data[name], dtype="float64").reshape(-1)
            if name in log_features:
                values = np.sign(values) * np.log1p(np.abs(values))
            std = float(np.nanstd(values))
            stats[name] = [float(np.nanmean(values)), std if std > 0 else 1.0]
            if target_bins:
                edges[name] = target_bin_edges(values, targets, num_bins, min_leaf=min_bin_rows)
            elif kwargs.get("numeric_encoding") == "piecewise_linear":
                edges[name] = quantile_bin_edges(values, num_bins)
        if edges and "bin_edges" not in kwargs:
            kwargs["bin_edges"] = edges
        return cls(vocabularies=vocabularies, numeric_stats=stats, **kwargs)

    # ------------------------------------------------------------------- model
    def feature_dtypes(self) -> dict[str, str]:
        dtypes = {}
        for name, vocab in self.vocabularies.items():
            is_int = all(isinstance(v, (int, np.integer)) for v in vocab)
            dtypes[name] = "int64" if is_int else "string"
        for name in self.numeric_stats:
            dtypes[name] = "float32"
        return dtypes

    def inputs(self) -> dict[str, Any]:
        """One scalar-per-row `keras.Input` per raw feature, named after it."""
        return {
            name: keras.Input(shape=(), dtype=dtype, name=name)
            for name, dtype in self.feature_dtypes().items()
        }

    @property
    def input_dtype(self) -> str:
        """float32 under any dtype policy: raw numeric features must not be
        autocast to float16 (values above 65504 overflow, precision is lost)."""
        return "float32"

    def build(self, input_shape: Any) -> None:
        for emb in self.embeddings.values():
            emb.build((None,))
        if self.numeric_embedding is not None:
            self.numeric_embedding.build((None, len(self.numeric_stats)))
        keep_frozen(self)
        self.built = True

    def call(self, inputs: Mapping[str, Any]) -> Any:
        missing = [f for f in self.feature_dtypes() if f not in inputs]
        if missing:
            raise ValueError(f"TabularEncoder: missing input features {missing}.")
        parts = []
        for name in self.vocabularies:
            x = inputs[name]
            if len(x.shape) > 1:
                x = ops.reshape(x, (-1,))
            embedding = self.embeddings[name]
            # Explicit (batch, dim): TFLite infers a scalar lookup for a
            # 1-row batch otherwise, and its concatenation then fails.
            ids = ops.reshape(self.lookups[name](x), (-1,))
            parts.append(ops.reshape(embedding(ids), (-1, embedding.output_dim)))
        if self.numeric_stats:
            columns = []
            for name, (mean, std) in self.numeric_stats.items():
                x = ops.cast(ops.reshape(inputs[name], (-1,)), "float32")
                if name in self.log_features:
                    x = ops.sign(x) * ops.log1p(ops.abs(x))
                # Bins live on the (log-)value itself, so zeros stay zeros.
                columns.append(
                    x if self.numeric_encoding == "piecewise_linear" else (x - mean) / std
                )
            numbers = ops.stack(columns, axis=-1)
            if self.numeric_embedding is not None:
                numbers = self.numeric_embedding(numbers)
            parts.append(numbers)
        return ops.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]

    @property
    def output_dim(self) -> int:
        numeric = len(self.numeric_stats)
        if self.numeric_embedding is not None:
            numeric = self.numeric_embedding.output_dim
        return sum(e.output_dim for e in self.embeddings.values()) + numeric

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (None, self.output_dim)

    def compute_output_spec(self, inputs: Any) -> Any:
        # Numeric parts are float32 and promote the (compute-dtype) embeddings.
        dtype = "float32" if self.numeric_stats else self.compute_dtype
        return keras.KerasTensor(self.compute_output_shape(None), dtype=dtype)

    def get_config(self) -> dict[str, Any]:
        vocabularies = {
            k: [int(v) if isinstance(v, np.integer) else v for v in vocab]
            for k, vocab in self.vocabularies.items()
        }
        return {
            **super().get_config(),
            "vocabularies": vocabularies,
            "numeric_stats": self.numeric_stats,
            "embedding_dim": self.embedding_dim,
            "log_features": self.log_features,
            "numeric_encoding": self.numeric_encoding,
            "bin_edges": self.bin_edges,
            "bin_embedding_dim": self.bin_embedding_dim,
            "periodic": self.periodic,
        }


def _collect_rows(
    dataset: Any, names: Sequence[str], max_rows: int | None, labels: bool = False
) -> tuple[dict[str, Any], dict[str, Any] | Any | None]:
    """Concatenates the named columns of a batched dataset, up to `max_rows`
    rows; with `labels`, also the labels of `(features, labels[, weights])`
    elements (a dict task -> array, or one array; None for feature-only
    elements)."""
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in names}
    label_chunks: dict[Any, list[np.ndarray]] = {}
    single = False
    rows = 0
    for element in dataset:
        features = element[0] if isinstance(element, (tuple, list)) else element
        if not isinstance(features, Mapping):
            raise ValueError(
                "TabularEncoder.adapt: dataset elements must be feature dicts or "
                f"(features, labels) tuples, got {type(features).__name__}."
            )
        missing = [n for n in names if n not in features]
        if missing:
            raise ValueError(f"TabularEncoder.adapt: features {missing} are not in the dataset.")
        for n in names:
            values = np.asarray(features[n]).reshape(-1)
            if values.dtype.kind in "SO":  # tf.string -> bytes; vocabularies hold str
                values = np.char.decode(values.astype("S"), "utf-8")
            chunks[n].append(values)
        if labels and isinstance(element, (tuple, list)) and len(element) > 1:
            y = element[1]
            single = not isinstance(y, Mapping)
            for task, value in ({None: y} if single else y).items():
                label_chunks.setdefault(task, []).append(np.asarray(value))
        rows += len(chunks[names[0]][-1]) if names else 0
        if max_rows is not None and rows >= max_rows:
            break
    columns = {n: np.concatenate(c)[:max_rows] for n, c in chunks.items()}
    if not label_chunks:
        return columns, None
    targets = {t: np.concatenate(c)[:max_rows] for t, c in label_chunks.items()}
    return columns, targets[None] if single else targets
