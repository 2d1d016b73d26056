"""Census-Income: a whole file is parsed once, then read from the cache."""

from __future__ import annotations

import importlib
import io
import os

import numpy as np
import pytest

census = importlib.import_module("mtl_keras.datasets.census_income")


@pytest.fixture
def small_csv(tmp_path, monkeypatch):
    """The first 60 rows of the real training file, and an empty cache folder."""
    source = os.path.join(census.data_dir(), "census_income_1994_1995_train.csv")
    with open(source) as f:
        head = [next(f) for _ in range(60)]
    path = tmp_path / "census_income_small.csv"
    path.write_text("".join(head))
    monkeypatch.setenv("MTL_KERAS_CACHE_DIR", str(tmp_path / "cache"))
    return path


def _equal(a: census.Split, b: census.Split) -> None:
    assert a.features.keys() == b.features.keys()
    for k, v in a.features.items():
        assert v.dtype == b.features[k].dtype, k
        np.testing.assert_array_equal(v, b.features[k], err_msg=k)
    for k, v in a.labels.items():
        np.testing.assert_array_equal(v, b.labels[k], err_msg=k)
    np.testing.assert_array_equal(a.instance_weight, b.instance_weight)


def test_second_read_comes_from_the_cache_and_equals_the_parse(small_csv, tmp_path):
    parsed = census.read_split(str(small_csv))
    cached_files = list((tmp_path / "cache").glob("census_*.npz"))
    assert len(cached_files) == 1
    assert parsed.features["education"].dtype.kind == "U"
    again = census.read_split(str(small_csv))
    _equal(parsed, again)
    # The cache is what was read: a planted value shows up.
    with np.load(cached_files[0]) as stored:
        arrays = dict(stored)
    arrays["label/income"] = np.full_like(arrays["label/income"], 7.0)
    np.savez(cached_files[0], **arrays)
    assert set(census.read_split(str(small_csv)).labels["income"]) == {7.0}


def test_a_changed_file_is_parsed_again(small_csv):
    assert len(census.read_split(str(small_csv))) == 60
    with open(small_csv) as f:
        first = f.readline()
    with open(small_csv, "a") as f:
        f.write(first)
    assert len(census.read_split(str(small_csv))) == 61


def test_nrows_reads_are_not_cached_and_a_broken_cache_is_ignored(small_csv, tmp_path):
    assert len(census.read_split(str(small_csv), nrows=10)) == 10
    assert not (tmp_path / "cache").exists()
    parsed = census.read_split(str(small_csv))
    (cached,) = (tmp_path / "cache").glob("census_*.npz")
    good = cached.read_bytes()
    for broken in (b"not a zip file", good[: len(good) // 2]):  # garbage, truncated
        cached.write_bytes(broken)
        _equal(parsed, census.read_split(str(small_csv)))


def test_an_unwritable_cache_folder_still_loads(small_csv, tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("MTL_KERAS_CACHE_DIR", str(blocker / "cache"))  # cannot be created
    assert len(census.read_split(str(small_csv))) == 60


def test_a_text_buffer_is_parsed_and_not_cached(small_csv, tmp_path):
    buffer = io.StringIO(small_csv.read_text())
    _equal(census.read_split(buffer), census.read_split(small_csv))  # a Path works too
    assert len(list((tmp_path / "cache").glob("census_*.npz"))) == 1  # the Path's only
