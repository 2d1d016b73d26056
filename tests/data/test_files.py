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


def worker_ids(ds: tf.data.Dataset, workers: int, index: int) -> np.ndarray:
    """Ids the worker `index` of `workers` reads: the rewrite MWMS applies
    (tf.distribute's auto_shard_dataset, with the dataset's shard policy)."""
    from tensorflow.python.distribute import input_ops

    sharded = input_ops.auto_shard_dataset(ds, workers, index, workers)
    return np.concatenate([x["id"].numpy() for x, *_ in sharded])


@pytest.mark.parametrize("num_shards", [6, 1])
def test_workers_read_disjoint_files_covering_all_rows(tmp_path, monkeypatch, num_shards):
    # The policy is chosen for the cluster in TF_CONFIG: FILE (6 files), DATA (1 file).
    monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config(["127.0.0.1:1", "127.0.0.1:2"], 0)))
    df = frame(60)
    files.write_tfrecords(df, str(tmp_path), FEATURES, TASKS, num_shards=num_shards)
    # Each worker builds its own pipeline (as in its own process), seeded alike.
    seen = [
        worker_ids(files.from_tfrecords(tmp_path, batch_size=4, shuffle_buffer=16, seed=3), 2, i)
        for i in range(2)
    ]
    assert not set(seen[0]) & set(seen[1])
    assert sorted(np.concatenate(seen)) == list(np.arange(60.0))
    if num_shards == 6:
        # By FILE: rows are dealt round-robin, so file k holds the ids = k mod 6;
        # worker i reads files i, i + 2, i + 4 and nothing else.
        for i in range(2):
            assert set(seen[i] % 6) == {i, i + 2, i + 4}


def test_parquet_workers_read_their_own_files(tmp_path, monkeypatch):
    df = frame(40)
    for i, part in enumerate(np.array_split(np.arange(40), 4)):
        df.iloc[part].to_parquet(tmp_path / f"part-{i}.parquet", index=False)
    seen = []
    for index in range(2):
        config = tf_config(["127.0.0.1:1", "127.0.0.1:2"], index)
        monkeypatch.setenv("TF_CONFIG", json.dumps(config))
        ds = files.from_parquet(tmp_path, FEATURES, TASKS, batch_size=8)
        seen.append(np.concatenate([x["id"].numpy() for x, *_ in ds]))
    assert not set(seen[0]) & set(seen[1])
    assert sorted(np.concatenate(seen)) == list(np.arange(40.0))
    assert set(seen[0]) == set(range(10)) | set(range(20, 30))  # files 0 and 2


def test_bad_shards_fail_naming_the_file_and_column(tmp_path):
    df = frame()
    # CSV: a file whose header differs (columns shifted) would be read by position.
    df.to_csv(tmp_path / "a.csv", index=False)
    df[list(reversed(df.columns))].to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(ValueError, match=r"b\.csv has the header"):
        files.from_csv(str(tmp_path / "*.csv"), FEATURES, TASKS)
    # Parquet: a shard without a column; a shard with a string in a numeric column.
    pq_dir = tmp_path / "pq"
    pq_dir.mkdir()
    df.to_parquet(pq_dir / "a.parquet", index=False)
    df.drop(columns=["age"]).to_parquet(pq_dir / "b.parquet", index=False)
    with pytest.raises(ValueError, match=r"Feature columns \['age'\] are not in .*b\.parquet"):
        files.from_parquet(pq_dir, FEATURES, TASKS)
    df.assign(age="old").to_parquet(pq_dir / "b.parquet", index=False)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"b\.parquet.*column 'age'"):
        list(files.from_parquet(pq_dir, FEATURES, TASKS, batch_size=64))
    # TFRecord: a shard written with another schema; a file that is not a TFRecord.
    tf_dir = tmp_path / "tf"
    files.write_tfrecords(df, str(tf_dir), FEATURES, TASKS, num_shards=2)
    other = files.write_tfrecords(df, str(tmp_path / "o"), ["id", "job"], TASKS, num_shards=1)
    (tf_dir / "part-x.tfrecord").write_bytes(open(other[0], "rb").read())
    with pytest.raises(ValueError, match=r"part-x\.tfrecord does not match .*'age': 'missing'"):
        files.from_tfrecords(tf_dir)
    unchecked = files.from_tfrecords(tf_dir, check_files=False)  # fails only when read
    with pytest.raises(tf.errors.InvalidArgumentError, match="Feature: age"):
        list(unchecked)
    (tf_dir / "part-x.tfrecord").write_bytes(b"not a tfrecord file at all")
    with pytest.raises(ValueError, match=r"part-x\.tfrecord cannot be read"):
        files.from_tfrecords(tf_dir)
    # A shard damaged in the middle: only reading it finds it; verify_tfrecords names it.
    (tf_dir / "part-x.tfrecord").unlink()
    assert files.verify_tfrecords(tf_dir) == 37
    shard = tf_dir / "part-00001-of-00002.tfrecord"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 4] = b"\xff\xff\xff\xff"
    shard.write_bytes(bytes(data))
    with pytest.raises(tf.errors.DataLossError):
        list(files.from_tfrecords(tf_dir))
    with pytest.raises(
        ValueError, match=r"part-00001-of-00002\.tfrecord is damaged after \d+ good"
    ):
        files.verify_tfrecords(tf_dir)


def test_write_tfrecords_from_chunks(tmp_path, reference):
    df = frame()
    chunks = (df.iloc[i : i + 10] for i in range(0, len(df), 10))
    files.write_tfrecords(chunks, str(tmp_path), FEATURES, TASKS, MASKS, num_shards=3)
    schema = json.loads((tmp_path / files.SCHEMA_FILE).read_text())
    assert schema["rows"] == 37
    assert_same(collect(files.from_tfrecords(tmp_path, batch_size=8)), as_bytes(reference))
    # An integer label column that gets a gap in a later chunk cannot keep its type.
    late_gap = df.assign(clicks=df["clicks"].astype("Int64"))
    late_gap.loc[30, "clicks"] = pd.NA
    chunks = [df.iloc[:20], late_gap.iloc[20:]]
    with pytest.raises(ValueError, match=r"label column 'clicks' \(task 'clicks'\) is integer"):
        files.write_tfrecords(chunks, str(tmp_path / "x"), FEATURES, TASKS, num_shards=2)


def test_adapt_encoder_fits_piecewise_linear_bins(tmp_path):
    df = frame(300)
    files.write_tfrecords(df, str(tmp_path), FEATURES, TASKS, num_shards=3)
    kwargs = dict(categorical=["job"], numeric=["age", "id"], log_features=["id"],
                  numeric_encoding="piecewise_linear", num_bins=8, bin_embedding_dim=4)  # fmt: skip
    features = {c: files.feature_array(df[c]) for c in ["job", "age", "id"]}
    direct = mk.layers.TabularEncoder.adapt(features, **kwargs)
    # A sample at least as large as the data: the same edges as adapt on all rows.
    exact = files.adapt_encoder(files.from_tfrecords(tmp_path, batch_size=32), **kwargs)
    for name in ("age", "id"):
        np.testing.assert_allclose(exact.bin_edges[name], direct.bin_edges[name], rtol=1e-6)
    assert exact.get_config()["bin_embedding_dim"] == 4
    # A 100-row sample: edges near the full quantiles, and from the whole stream
    # (the reservoir keeps late rows too).
    sampled = files.adapt_encoder(
        files.from_tfrecords(tmp_path, batch_size=32), bin_sample_rows=100, **kwargs
    )
    assert len(sampled.bin_edges["age"]) == len(direct.bin_edges["age"])
    np.testing.assert_allclose(sampled.bin_edges["age"][1:-1], direct.bin_edges["age"][1:-1],
                               atol=6.0)  # fmt: skip


@pytest.mark.parametrize("drop_remainder", [False, True])
def test_tfrecord_and_parquet_datasets_know_their_number_of_batches(tmp_path, drop_remainder):
    df = frame(37)
    paths = files.write_tfrecords(df, str(tmp_path / "tfr"), FEATURES, TASKS, num_shards=3)
    (tmp_path / "pq").mkdir()
    df.iloc[:20].to_parquet(tmp_path / "pq" / "part-0.parquet")
    df.iloc[20:].to_parquet(tmp_path / "pq" / "part-1.parquet")
    (tmp_path / "csv").mkdir()
    df.iloc[:20].to_csv(tmp_path / "csv" / "part-0.csv", index=False)
    # The last line without its newline still counts (TextLineDataset reads it).
    text = df.iloc[20:].to_csv(index=False).rstrip("\n")
    (tmp_path / "csv" / "part-1.csv").write_text(text)
    expected = 37 // 8 if drop_remainder else 5
    readers = {
        "csv": files.from_csv(
            str(tmp_path / "csv"), FEATURES, TASKS, batch_size=8, drop_remainder=drop_remainder
        ),
        "tfrecord": files.from_tfrecords(paths, batch_size=8, drop_remainder=drop_remainder),
        "parquet": files.from_parquet(
            str(tmp_path / "pq"), FEATURES, TASKS, batch_size=8, drop_remainder=drop_remainder
        ),
    }
    for name, ds in readers.items():
        assert int(ds.cardinality()) == expected, name
        assert sum(1 for _ in ds) == expected, name
    # A subset of the shards: their own rows (dealt round-robin: 13, 12, 12).
    two = files.from_tfrecords(paths[1:], batch_size=8)
    assert int(two.cardinality()) == 3 and sum(len(b[0]["id"]) for b in two) == 24


def test_csv_rows_are_not_counted_when_asked_not_to(tmp_path):
    frame(10).to_csv(tmp_path / "a.csv", index=False)
    ds = files.from_csv(str(tmp_path / "a.csv"), FEATURES, TASKS, batch_size=4, count_rows=False)
    assert int(ds.cardinality()) == tf.data.UNKNOWN_CARDINALITY
    assert sum(1 for _ in ds) == 3


def test_old_tfrecord_schemas_without_shard_counts_stay_unknown(tmp_path):
    folder = tmp_path / "tfr"
    files.write_tfrecords(frame(12), str(folder), FEATURES, TASKS, num_shards=2)
    schema_path = folder / files.SCHEMA_FILE
    schema = json.loads(schema_path.read_text())
    del schema["shard_rows"]
    schema_path.write_text(json.dumps(schema))
    ds = files.from_tfrecords(str(folder), batch_size=4)
    assert int(ds.cardinality()) == tf.data.UNKNOWN_CARDINALITY
    assert sum(1 for _ in ds) == 3


@pytest.mark.parametrize("reader", ["tfrecord", "csv"])
def test_fit_on_a_file_dataset_does_not_warn_that_data_ran_out(tmp_path, reader):
    import warnings

    import keras

    df = pd.DataFrame({"age": np.arange(64.0), "income": (np.arange(64) % 2).astype(float)})
    folder = str(tmp_path / "files")
    if reader == "tfrecord":
        files.write_tfrecords(df, folder, ["age"], {"income": "income"}, num_shards=2)
        ds = files.from_tfrecords(folder, batch_size=16)
    else:
        (tmp_path / "files").mkdir()
        df.iloc[:30].to_csv(tmp_path / "files" / "a.csv", index=False)
        df.iloc[30:].to_csv(tmp_path / "files" / "b.csv", index=False)
        ds = files.from_csv(folder, ["age"], {"income": "income"}, batch_size=16)
    task = mk.Binary("income")
    age = keras.Input((), name="age")
    head = task.head(keras.layers.Reshape((1,))(age))
    model = mk.MultiTaskModel({"age": age}, {"income": head}, tasks=[task])
    model.compile("adam")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(ds, epochs=2, steps_per_epoch=4, verbose=0).history
    assert not [w for w in caught if "ran out of data" in str(w.message)]
    assert np.isfinite(history["loss"]).all()  # both epochs saw data


def test_a_malformed_csv_line_is_named_by_file_and_line(tmp_path):
    (tmp_path / "a.csv").write_text('age,job,income\n30,"x, y",1\n31,b,0\n')  # quoted comma: fine
    (tmp_path / "b.csv").write_text("age,job,income\n30,a,1\n31,b\n32,c,1\n")
    ds = files.from_csv(str(tmp_path / "*.csv"), ["age", "job"], {"income": "income"}, batch_size=2)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"b\.csv\W* line 3 has 2 fields"):
        for _ in ds:
            pass
    good = files.from_csv(str(tmp_path / "a.csv"), ["age", "job"], {"income": "income"})
    x, _ = next(iter(good))
    assert x["job"].numpy().tolist() == [b"x, y", b"b"]


def test_a_value_of_the_wrong_type_is_named_by_file_line_and_column(tmp_path):
    (tmp_path / "a.csv").write_text("age,job,income\n30,a,1\n31,b,0\n")
    (tmp_path / "b.csv").write_text("age,job,income\n30,a,1\n31,b,0\n3O,c,1\n")  # letter O
    ds = files.from_csv(str(tmp_path / "*.csv"), ["age", "job"], {"income": "income"}, batch_size=4)
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"b\.csv\W* line 4: column \W*age\W* holds \W*3O\W*, which is no float",
    ):
        for _ in ds:
            pass
    # An integer label column: a word, a 19-digit number, one beyond int32.
    for value, kind in (("yes", "int"), ("1" * 19, "int"), ("3000000000", "32-bit int")):
        (tmp_path / "b.csv").write_text(f"age,job,income\n30,a,{value}\n")
        ds = files.from_csv(
            str(tmp_path / "*.csv"), ["age", "job"], {"income": "income"}, batch_size=4
        )
        pattern = rf"line 2: column \W*income\W* holds \W*{value}\W*, which is no {kind} "
        with pytest.raises(tf.errors.InvalidArgumentError, match=pattern):
            for _ in ds:
                pass


def test_numbers_in_every_form_decode_csv_accepts_still_parse(tmp_path):
    values = [" 30", "30 ", "1e3", "+2", ".5", "5.", "nan", "-Infinity", "0x10", '"7"', ""]
    lines = "".join(f"{v},{i % 2}\n" for i, v in enumerate(values))
    (tmp_path / "a.csv").write_text("x,y\n" + lines)
    ds = files.from_csv(
        str(tmp_path / "a.csv"),
        ["x"],
        {"y": "y"},
        batch_size=len(values),
        column_kinds={"x": "float"},
    )
    x, y = next(iter(ds))
    expected = [30, 30, 1000, 2, 0.5, 5, np.nan, -np.inf, 16, 7, np.nan]
    np.testing.assert_array_equal(x["x"].numpy(), np.array(expected, np.float32))
    assert y["y"].dtype == tf.int32 and y["y"].numpy().tolist() == [
        i % 2 for i in range(len(values))
    ]
    (tmp_path / "b.csv").write_text("x,y\n1.0, -2147483648\n2.0,2147483647 \n3.0,\n")
    ints = files.from_csv(
        str(tmp_path / "b.csv"), ["x"], {"y": "y"}, batch_size=3, column_kinds={"y": "int"}
    )
    _, y = next(iter(ints))
    assert y["y"].numpy().tolist() == [-(2**31), 2**31 - 1, -1]  # empty: unlabelled
