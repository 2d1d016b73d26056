"""pandas DataFrames -> multi-task tf.data pipelines."""

from __future__ import annotations

import warnings
from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow as tf

from mtl_keras.contracts import string_labels_error
from mtl_keras.data.pipeline import from_arrays


def feature_array(column: Any) -> np.ndarray:
    """Numeric/bool columns -> float32; everything else -> str ("" for missing)."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
        return column.to_numpy(dtype="float32", na_value=np.nan)
    return column.astype(object).where(column.notna(), "").to_numpy(dtype=object).astype(str)


def label_array(column: Any, task: str) -> np.ndarray:
    """Label column -> int32 when integral without gaps, else float32 with NaN.

    Integer columns keep their dtype (and -1 "missing" ids); nullable integer
    or float columns become float32 so that a missing value is NaN, which
    every task type treats as "unlabelled".
    """
    import pandas as pd

    if pd.api.types.is_bool_dtype(column) and not column.isna().any():
        return column.to_numpy(dtype="float32")
    if not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)):
        raise string_labels_error(task, column.dtype)
    if pd.api.types.is_integer_dtype(column) and not column.isna().any():
        return column.to_numpy(dtype="int32")
    return column.to_numpy(dtype="float32", na_value=np.nan)


def from_pandas(
    frame: Any,
    feature_columns: Sequence[str],
    task_columns: Mapping[str, str],
    batch_size: int = 256,
    shuffle: bool = False,
    seed: int | None = None,
    mask_columns: Mapping[str, str] | None = None,
    stack_features: bool = False,
    cache: bool = False,
    drop_remainder: bool = False,
    missing_columns: str = "unlabelled",
    tasks: Sequence[Any] | None = None,
) -> tf.data.Dataset:
    """Batches a DataFrame into `(features, labels[, sample_weight])`.

    Missing labels become what `MultiTaskModel` masks:

    - NaN / `pd.NA` in a label column -> float32 NaN (unlabelled row);
    - -1 (any negative) in an integer column -> kept as is (unlabelled for
      `Binary` and `Multiclass`; a `Regression` target treats only NaN as missing);
    - a task whose column is absent from `frame` -> the task is left out of
      the label dict, which `MultiTaskModel` reads as "no row is labelled for
      this task" (loss 0, no metric update). A `UserWarning` names it, so a
      typo does not go unnoticed; pass `missing_columns="raise"` to make it an
      error;
    - `mask_columns` (task -> 0/1 or weight column) -> passed as per-task
      `sample_weight`, multiplied into the label mask.

    Args:
        frame: a `pandas.DataFrame`.
        feature_columns: columns used as raw features. Numeric and bool
            columns become float32 (NaN kept), other columns strings.
        task_columns: dict task name -> label column.
        batch_size: rows per batch.
        shuffle: reshuffle every epoch.
        seed: shuffle seed.
        mask_columns: optional dict task name -> column of per-row weights/0-1 masks.
        stack_features: return features as one float32 `(rows, len(feature_columns))`
            matrix instead of a dict (all feature columns must be numeric).
        cache: cache the batches in memory after the first epoch (no shuffle only).
        drop_remainder: drop the last incomplete batch.
        missing_columns: `"unlabelled"` (default, see above) or `"raise"`.
        tasks: optional task specs: labels are checked against them up front
            (see `from_arrays`).

    Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"x": [0.0, 1.0], "y": [1.0, float("nan")]})
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     ds = from_pandas(df, ["x"], {"y": "y", "z": "no_such_col"})
    >>> print(caught[0].message)
    Label columns of tasks ['z'] are not in the frame: these tasks are unlabelled for every row.
    >>> x, labels = next(iter(ds))
    >>> sorted(labels)
    ['y']
    """
    if missing_columns not in ("unlabelled", "raise"):
        raise ValueError(
            f"`missing_columns` must be 'unlabelled' or 'raise', got {missing_columns!r}."
        )
    absent_features = [c for c in feature_columns if c not in frame.columns]
    if absent_features:
        raise ValueError(f"Feature columns {absent_features} are not in the frame.")
    if stack_features:
        matrix = frame[list(feature_columns)]
        try:
            features: Any = matrix.to_numpy(dtype="float32", na_value=np.nan)
        except (TypeError, ValueError) as err:
            raise ValueError("`stack_features=True` needs numeric feature columns only.") from err
    else:
        features = {c: feature_array(frame[c]) for c in feature_columns}

    labels: dict[str, np.ndarray] = {}
    absent = []
    for task, column in task_columns.items():
        if column not in frame.columns:
            absent.append(task)
            continue
        labels[task] = label_array(frame[column], task)
    if absent:
        message = f"Label columns of tasks {absent} are not in the frame: " + (
            "" if missing_columns == "raise" else "these tasks are unlabelled for every row."
        )
        if missing_columns == "raise":
            raise ValueError(message + "check `task_columns`.")
        warnings.warn(message, UserWarning, stacklevel=2)

    weights = None
    if mask_columns:
        unknown = [c for c in mask_columns.values() if c not in frame.columns]
        if unknown:
            raise ValueError(f"Mask columns {unknown} are not in the frame.")
        weights = {
            task: frame[col].to_numpy(dtype="float32", na_value=0.0)
            for task, col in mask_columns.items()
        }
    return from_arrays(
        features,
        labels,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        sample_weight=weights,
        cache=cache,
        drop_remainder=drop_remainder,
        tasks=tasks,
    )
