"""Census-Income from TFRecord shards: the same rows as in memory, and the
same test AUC within seed noise (benchmarks/census_files.py on a subsample)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib

import numpy as np
import pytest

from mtl_keras.data import files

SCRIPT = pathlib.Path(__file__).parents[2] / "benchmarks" / "census_files.py"
NROWS = 8000
#: |AUC(files) - AUC(memory)| allowed here (7,200 training rows, batch 128, 3 epochs,
#: 8,000 test rows). Measured on this setting, seeds 0-2 (2026-12-03): income
#: 0.9508-0.9523 (memory) / 0.9513-0.9515 (files), never_married 0.9928-0.9931 /
#: 0.9932-0.9933: a spread of 0.0015 / 0.0005; the bounds are about three times that.
TOLERANCE = {"income": 0.005, "never_married": 0.0015}


def bench():
    spec = importlib.util.spec_from_file_location("census_files", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    from mtl_keras.datasets.census_income import data_dir

    try:
        data_dir()
    except (ImportError, FileNotFoundError) as err:
        pytest.skip(str(err))
    out = tmp_path_factory.mktemp("census_shards")
    rows = bench().write_census_shards(str(out), num_shards=4, nrows=NROWS, seed=0)
    return out, rows


@pytest.mark.slow
def test_shards_hold_the_demo_split_and_train_like_memory(shards):
    from mtl_keras.datasets.census_income import CATEGORICAL, NUMERIC, census_income

    out, rows = shards
    module = bench()
    assert rows == {"train": 7200, "val": 800, "test": 8000}
    assert len(list((out / "train").glob("*.tfrecord"))) == 4
    # Every value of the training split, in CSV order, as census_income() reads it.
    train, test = census_income(NROWS)
    split = module.split_rows(len(train), len(test), None, 0)
    expected = train.take(np.sort(split["train"]))
    got: dict[str, list] = {}
    for x, y in files.from_tfrecords(out / "train", batch_size=1024):
        for k, v in {**x, **y}.items():
            got.setdefault(k, []).append(v.numpy())
    got = {k: np.concatenate(v) for k, v in got.items()}
    for c in CATEGORICAL:
        np.testing.assert_array_equal(got[c].astype(str), expected.features[c], err_msg=c)
    for c in NUMERIC:
        np.testing.assert_array_equal(got[c], expected.features[c], err_msg=c)
    for t, labels in expected.labels.items():
        np.testing.assert_array_equal(got[t], labels, err_msg=t)

    # The demo recipe trained from memory and from the shards, same seed.
    args = argparse.Namespace(data=str(out), seed=0, epochs=3, nrows=NROWS, subsample=None,
                              split_seed=0, ema=None, shuffle_buffer=2048,
                              batch_size=128)  # fmt: skip
    memory, streamed = module.run_memory(args), module.run_files(args)
    print(json.dumps({"memory": memory["auc"], "files": streamed["auc"]}))
    for task, tolerance in TOLERANCE.items():
        assert abs(memory["auc"][task] - streamed["auc"][task]) <= tolerance, (
            task,
            memory,
            streamed,
        )
        assert streamed["auc"][task] > 0.94, (task, streamed)
