"""Streaming readers (CSV, Parquet, TFRecord) give what from_pandas gives."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import mtl_keras as mk
from mtl_keras.data import files
from mtl_keras.distribute.cluster import tf_config

FEATURES = ["id", "age", "job"]
TASKS = {"income": "income", "stay": "stay", "clicks": "clicks"}
MASKS = {"stay": "stay_mask"}


def frame(n: int = 37) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    age = rng.normal(40, 10, n)
    age[::7] = np.nan
    job = rng.choice(["a", "b, quoted", "c"], n).astype(object)
    job[::5] = None
    income = rng.integers(0, 2, n).astype(float)
    income[::4] = np.nan  # float label with missing rows
    return pd.DataFrame(
        {
            "id": np.arange(n, dtype=float),
            "age": age,
            "job": job,
            "income": income,
            "stay": rng.normal(size=n),
            "clicks": rng.integers(0, 3, n),  # integer label (int32)
            "stay_mask": (rng.random(n) > 0.3).astype(float),
        }
    )


def collect(ds: tf.data.Dataset) -> dict[str, np.ndarray]:
    """All rows as flat arrays keyed "f:<name>", "y:<task>", "w:<task>", sorted by id."""
    parts: dict[str, list] = {}
    for batch in ds:
        for prefix, d in zip("fyw", batch):
            for k, v in d.items():
                parts.setdefault(f"{prefix}:{k}", []).append(v.numpy())
    rows = {k: np.concatenate(v) for k, v in parts.items()}
    order = np.argsort(rows["f:id"])
    return {k: v[order] for k, v in rows.items()}


def assert_same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, (k, a[k].dtype, b[k].dtype)
        if a[k].dtype.kind == "f":
            np.testing.assert_allclose(a[k], b[k], rtol=1e-6, err_msg=k)
        else:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.fixture(scope="module")
def reference() -> dict:
    ds = mk.data.from_pandas(frame(), FEATURES, TASKS, mask_columns=MASKS, batch_size=8)
    rows = collect(ds)
    rows["f:job"] = rows["f:job"].astype(object)
    return rows


def as_bytes(rows: dict) -> dict:
    # from_pandas holds strings as numpy str; tf.data yields bytes.
    out = dict(rows)
    out["f:job"] = np.array(
        [v.encode() if isinstance(v, str) else v for v in rows["f:job"]], object
    )
    return out


def test_csv_shards_equal_in_memory(tmp_path, reference):
    df = frame()
    for i, part in enumerate(np.array_split(np.arange(len(df)), 3)):
        df.iloc[part].to_csv(tmp_path / f"part-{i}.csv", index=False)
    ds = files.from_csv(str(tmp_path / "*.csv"), FEATURES, TASKS, mask_columns=MASKS, batch_size=8)
    assert_same(collect(ds), as_bytes(reference))


def test_parquet_shards_equal_in_memory(tmp_path, reference):
    df = frame()
    for i, part in enumerate(np.array_split(np.arange(len(df)), 4)):
        df.iloc[part].to_parquet(tmp_path / f"part-{i}.parquet", index=False)
    ds = files.from_parquet(
        tmp_path, FEATURES, TASKS, mask_columns=MASKS, batch_size=8, read_batch_rows=5
    )
    assert_same(collect(ds), as_bytes(reference))


def test_tfrecord_round_trip_keeps_order(tmp_path, reference):
    paths = files.write_tfrecords(frame(), str(tmp_path), FEATURES, TASKS, MASKS, num_shards=3)
    assert len(paths) == 3
    ds = files.from_tfrecords(tmp_path, batch_size=8)
    assert_same(collect(ds), as_bytes(reference))
    # Round-robin shards read back in interleaved order: the frame's order.
    ids = np.concatenate([x["id"].numpy() for x, *_ in ds])
    np.testing.assert_array_equal(ids, np.arange(37.0))
    # Shuffled: the same rows, another order, and every epoch another one.
    shuffled = files.from_tfrecords(tmp_path, batch_size=8, shuffle_buffer=64, seed=1)
    first = np.concatenate([x["id"].numpy() for x, *_ in shuffled])
    second = np.concatenate([x["id"].numpy() for x, *_ in shuffled])
    assert sorted(first) == sorted(second) == list(np.arange(37.0))
    assert list(first) != list(second)


def test_shard_policy_and_errors(tmp_path, monkeypatch):
    policy = tf.data.experimental.AutoShardPolicy
    assert files.shard_policy(4, num_workers=2) == policy.FILE
    assert files.shard_policy(1, num_workers=2) == policy.DATA
    frame().to_csv(tmp_path / "a.csv", index=False)
    with pytest.raises(ValueError, match=r"Label columns \['nope'\]"):
        files.from_csv(str(tmp_path / "a.csv"), FEATURES, {"x": "nope"})
    with pytest.raises(ValueError, match="No input files"):
        files.from_csv(str(tmp_path / "*.parquet"), FEATURES, TASKS)
    # One file for two workers: shard by records (DATA), not by file.
    monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config(["127.0.0.1:1", "127.0.0.1:2"], 0)))
    ds = files.from_csv(str(tmp_path / "a.csv"), FEATURES, TASKS)
    assert ds.options().experimental_distribute.auto_shard_policy == policy.DATA


def test_adapt_encoder_streams_like_adapt(tmp_path):
    df = frame(200)
    files.write_tfrecords(df, str(tmp_path), FEATURES, TASKS, num_shards=2)
    streamed = files.adapt_encoder(
        files.from_tfrecords(tmp_path, batch_size=16),
        categorical=["job"],
        numeric=["age"],
        log_features=["age"],
    )
    features = {"job": files.feature_array(df["job"]), "age": files.feature_array(df["age"])}
    direct = mk.layers.TabularEncoder.adapt(
        features, categorical=["job"], numeric=["age"], log_features=["age"]
    )
    assert streamed.vocabularies == direct.vocabularies
    np.testing.assert_allclose(
        streamed.numeric_stats["age"], direct.numeric_stats["age"], rtol=1e-9
    )
    sample = files.adapt_encoder(
        files.from_tfrecords(tmp_path, batch_size=16), categorical=["job"], max_rows=20
    )
    assert sum(1 for _ in sample.vocabularies["job"]) <= 4


def test_model_trains_from_tfrecords(tmp_path):
    data = frame(64)
    # TabularEncoder does not impute: NaN features stop training (input contract).
    data["age"] = data["age"].fillna(40.0)
    files.write_tfrecords(data, str(tmp_path), FEATURES, TASKS, MASKS, num_shards=2)
    ds = files.from_tfrecords(tmp_path, feature_columns=["age", "job"], batch_size=16)
    encoder = files.adapt_encoder(ds, categorical=["job"], numeric=["age"])
    tasks = [mk.Binary("income"), mk.Regression("stay"), mk.Multiclass("clicks", num_classes=3)]
    model = mk.builders.shared_bottom(encoder.inputs(), tasks, encoder=encoder, trunk_units=(8,))
    model.compile("adam")
    history = model.fit(ds, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
