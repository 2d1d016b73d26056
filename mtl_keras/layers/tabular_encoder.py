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


def auto_embedding_dim(vocab_size: int) -> int:
    """A common rule of thumb (fast.ai): 1.6 * n^0.56, capped at 32."""
    return int(min(32, max(2, round(1.6 * vocab_size**0.56))))


@keras.saving.register_keras_serializable(package="mtl_keras")
class TabularEncoder(keras.layers.Layer):
    """Embeds categorical features and standardizes numeric ones.

    Call it on a dict of raw feature tensors of shape `(batch,)`; it returns
    the concatenation of one embedding per categorical feature and the
    standardized numeric features, `(batch, output_dim)`. Unknown categories
    map to a shared out-of-vocabulary embedding.

    Fit the vocabularies and statistics with `TabularEncoder.adapt(data, ...)`
    (a dict of 1-D arrays); they are stored in the config, so the layer
    round-trips through `.keras` files and SavedModel export.

    Args:
        vocabularies: dict categorical feature -> list of known values
            (strings or integers).
        numeric_stats: dict numeric feature -> (mean, std).
        embedding_dim: int, or None for a size-dependent default.
        log_features: numeric features transformed with `sign(x) *
            log1p(|x|)` before standardization (heavy-tailed amounts).

    Example:
    >>> import numpy as np
    >>> data = {"city": np.array(["a", "b", "a"]), "age": np.array([20., 30., 40.])}
    >>> enc = TabularEncoder.adapt(data, categorical=["city"], numeric=["age"])
    >>> enc({k: keras.ops.convert_to_tensor(v) for k, v in data.items()}).shape
    (3, 3)
    """

    def __init__(
        self,
        vocabularies: Mapping[str, Sequence[Any]] | None = None,
        numeric_stats: Mapping[str, Sequence[float]] | None = None,
        embedding_dim: int | None = None,
        log_features: Sequence[str] = (),
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
        **kwargs: Any,
    ) -> TabularEncoder:
        """Builds an encoder from training data (dict feature -> 1-D array).

        Categories seen fewer than `min_count` times go to the OOV bucket;
        at most `max_tokens` most frequent values are kept per feature.
        """
        missing = [f for f in [*categorical, *numeric] if f not in data]
        if missing:
            raise ValueError(f"TabularEncoder.adapt: features {missing} are not in the data.")
        vocabularies = {}
        for name in categorical:
            values = np.asarray(data[name]).reshape(-1)
            counts = Counter(values.tolist())
            kept = [v for v, c in counts.most_common(max_tokens) if c >= min_count]
            vocabularies[name] = sorted(kept, key=lambda v: (-counts[v], str(v)))
        stats = {}
        log_features = set(kwargs.get("log_features", ()))
        for name in numeric:
            values = np.asarray(data[name], dtype="float64").reshape(-1)
            if name in log_features:
                values = np.sign(values) * np.log1p(np.abs(values))
            std = float(np.nanstd(values))
            stats[name] = [float(np.nanmean(values)), std if std > 0 else 1.0]
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

    def build(self, input_shape: Any) -> None:
        for emb in self.embeddings.values():
            emb.build((None,))
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
            parts.append(self.embeddings[name](self.lookups[name](x)))
        if self.numeric_stats:
            columns = []
            for name, (mean, std) in self.numeric_stats.items():
                x = ops.cast(ops.reshape(inputs[name], (-1,)), "float32")
                if name in self.log_features:
                    x = ops.sign(x) * ops.log1p(ops.abs(x))
                columns.append((x - mean) / std)
            parts.append(ops.stack(columns, axis=-1))
        return ops.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]

    @property
    def output_dim(self) -> int:
        return sum(e.output_dim for e in self.embeddings.values()) + len(self.numeric_stats)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (None, self.output_dim)

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
        }
