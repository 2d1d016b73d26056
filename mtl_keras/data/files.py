"""Streaming multi-task input from sharded files: CSV, TFRecord, Parquet.

Readers return what `from_pandas` returns, batched from files that need not
fit in memory: `(features, labels[, sample_weight])` dicts with numeric
features as float32 (NaN kept), other features as raw strings ("" when
missing), labels per task (NaN, or -1 in an integer column, = unlabelled;
see `mtl_keras.tasks`) and optional per-task mask columns as sample weights.

Under `tf.distribute.MultiWorkerMirroredStrategy` each worker reads its own
files (tf.data auto-shard by FILE) when there are at least as many files as
workers, else every worker reads all files and keeps its share of the
records (by DATA). Batches are global batches, as `fit` expects.

    write_tfrecords(frame, "data/train", ["age", "job"], {"income": "income"}, num_shards=8)
    ds = from_tfrecords("data/train/*.tfrecord", batch_size=512, shuffle_buffer=10_000)
    encoder = adapt_encoder(ds, categorical=["job"], numeric=["age"])
"""

from __future__ import annotations

import glob
import json
import os
from collections import Counter
from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow as tf

from mtl_keras.data.frames import feature_array, label_array

SCHEMA_FILE = "_schema.json"
_AUTOSHARD = tf.data.experimental.AutoShardPolicy


# ------------------------------------------------------------------ common
def list_files(files: str | Sequence[str], suffix: str = "") -> list[str]:
    """A glob pattern, a directory (its `*suffix*` files) or a list of paths
    -> sorted file list."""
    if isinstance(files, (str, os.PathLike)):
        path = os.fspath(files)
        if os.path.isdir(path):
            found = sorted(
                os.path.join(path, f)
                for f in os.listdir(path)
                if not f.startswith(("_", ".")) and suffix in f
            )
        else:
            found = sorted(glob.glob(path))
    else:
        found = [os.fspath(f) for f in files]
    if not found:
        raise ValueError(f"No input files match {files!r}" + (f" (*{suffix}*)." if suffix else "."))
    return found


def shard_policy(num_files: int, num_workers: int | None = None) -> Any:
    """FILE when every worker gets at least one file, else DATA."""
    if num_workers is None:
        from mtl_keras.distribute.cluster import num_workers as workers

        num_workers = workers()
    return _AUTOSHARD.FILE if num_files >= num_workers else _AUTOSHARD.DATA


def _finish(
    ds: tf.data.Dataset,
    policy: Any,
    batch_size: int,
    shuffle_buffer: int,
    seed: int | None,
    drop_remainder: bool,
    decode: Any,
    rows: int | None = None,
) -> tf.data.Dataset:
    """Shuffle rows, batch, decode per batch, prefetch; set the shard policy.

    `rows`, when the files' row count is known (Parquet metadata, the
    TFRecord schema, counted CSV lines), gives the dataset its number of batches: `fit` then
    shows a step count and no "input ran out of data" warning at the end of
    the first epoch. Not under several workers, each of which reads a share.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
    if shuffle_buffer:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if rows is not None and _single_worker():
        batches = rows // batch_size if drop_remainder else -(-rows // batch_size)
        # A file that changed since its count was taken fails here, by count.
        ds = ds.apply(tf.data.experimental.assert_cardinality(batches))
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = policy
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def _single_worker() -> bool:
    from mtl_keras.distribute.cluster import num_workers

    return num_workers() == 1


def _split(
    columns: Mapping[str, Any],
    feature_columns: Sequence[str],
    task_columns: Mapping[str, str],
    mask_columns: Mapping[str, str] | None,
) -> tuple:
    features = {c: columns[c] for c in feature_columns}
    labels = {task: columns[col] for task, col in task_columns.items()}
    if mask_columns:
        weights = {task: tf.cast(columns[col], tf.float32) for task, col in mask_columns.items()}
        return features, labels, weights
    return features, labels


def _check_columns(
    available: Sequence[str],
    feature_columns: Sequence[str],
    task_columns: Mapping[str, str],
    mask_columns: Mapping[str, str] | None,
    source: str,
) -> None:
    for kind, wanted in (
        ("Feature", list(feature_columns)),
        ("Label", list(task_columns.values())),
        ("Mask", list((mask_columns or {}).values())),
    ):
        absent = [c for c in wanted if c not in available]
        if absent:
            raise ValueError(
                f"{kind} columns {absent} are not in {source} (columns: {list(available)})."
            )


def _kinds_from_frame(frame: Any, feature_columns, task_columns, mask_columns) -> dict[str, str]:
    """column -> "float" | "int" | "string", as `from_pandas` would type it."""
    kinds = {}
    for c in feature_columns:
        kinds[c] = "float" if feature_array(frame[c]).dtype.kind == "f" else "string"
    for task, c in task_columns.items():
        kinds[c] = "int" if label_array(frame[c], task).dtype.kind == "i" else "float"
    for c in (mask_columns or {}).values():
        kinds[c] = "float"
    return kinds


# --------------------------------------------------------------------- CSV
def from_csv(
    files: str | Sequence[str],
    feature_columns: Sequence[str],
    task_columns: Mapping[str, str],
    mask_columns: Mapping[str, str] | None = None,
    batch_size: int = 256,
    shuffle_buffer: int = 0,
    seed: int | None = None,
    drop_remainder: bool = False,
    column_kinds: Mapping[str, str] | None = None,
    sample_rows: int = 1000,
    count_rows: bool = True,
) -> tf.data.Dataset:
    """Sharded CSV files (with a header row) -> a multi-task dataset.

    Column types are those `from_pandas` gives the first `sample_rows` rows
    of the first file, unless `column_kinds` ("float", "int" or "string" per
    column) says otherwise. An empty field is NaN (float), "" (string) or -1
    (int label: unlabelled for Binary/Multiclass). A line with another number
    of fields than the header, or a value that is no number in a numeric
    column, stops reading with an error naming its file and line number
    (and the column and value). With `count_rows` the files' lines are
    counted once (a read of every file, ~1 GB/s locally) so that the dataset
    knows its number of batches, as Parquet and TFRecord datasets do: `fit`
    shows a step count, gives no "input ran out of data" warning and reads
    the files again every epoch under `steps_per_epoch`.

    Args:
        files: glob pattern, directory or list of CSV files (same header).
        feature_columns: raw feature columns.
        task_columns: dict task name -> label column.
        mask_columns: optional dict task name -> 0/1 or weight column.
        batch_size: global batch size.
        shuffle_buffer: rows in the shuffle buffer (0: file order).
        seed: shuffle seed (give one under MWMS so workers agree on files order).
        drop_remainder: drop the last incomplete batch.
        column_kinds: optional types overriding the sampled ones.
        sample_rows: rows read to infer column types.
        count_rows: count the rows when the dataset is built (off for files
            too large to read twice; the number of batches is then unknown).

    Example:
    >>> import tempfile
    >>> import pandas as pd
    >>> df = pd.DataFrame({"age": [30.0, 41.0, 52.0], "job": ["a", "b", "a"],
    ...                    "income": [0.0, 1.0, 1.0]})
    >>> folder = tempfile.mkdtemp()
    >>> df.to_csv(os.path.join(folder, "part-0.csv"), index=False)
    >>> ds = from_csv(os.path.join(folder, "*.csv"), ["age", "job"], {"income": "income"},
    ...               batch_size=2)
    >>> x, y = next(iter(ds))
    >>> sorted(x), y["income"].numpy().tolist()
    (['age', 'job'], [0.0, 1.0])
    """
    import pandas as pd

    paths = list_files(files, ".csv")
    sample = pd.read_csv(paths[0], nrows=sample_rows)
    header = list(sample.columns)
    _check_columns(header, feature_columns, task_columns, mask_columns, paths[0])
    for path in paths[1:]:
        # decode_csv reads fields by position: another header would shift columns silently.
        other = list(pd.read_csv(path, nrows=0).columns)
        if other != header:
            raise ValueError(
                f"CSV file {path} has the header {other}, but {paths[0]} has {header}: "
                "every file must have the same columns in the same order."
            )
    kinds = _kinds_from_frame(sample, feature_columns, task_columns, mask_columns)
    kinds.update(column_kinds or {})
    wanted = list(
        dict.fromkeys([*feature_columns, *task_columns.values(), *(mask_columns or {}).values()])
    )
    select = sorted(header.index(c) for c in wanted)
    names = [header[i] for i in select]
    defaults = {
        "float": tf.constant([np.nan], tf.float32),
        "int": tf.constant([-1], tf.int32),
        "string": tf.constant([""], tf.string),
    }
    record_defaults = [defaults[kinds[n]] for n in names]
    strings = tf.constant([""], tf.string)

    def decode(lines: Any, numbers: Any, sources: Any) -> tuple:
        with tf.control_dependencies([_check_field_counts(lines, numbers, sources, header)]):
            # As strings, so that a value of the wrong type can be named.
            fields = tf.io.decode_csv(lines, [strings] * len(select), select_cols=select)
        values = {
            name: _parse_column(field, name, kinds[name], default, numbers, sources)
            for name, field, default in zip(names, fields, record_defaults)
        }
        return _split(values, feature_columns, task_columns, mask_columns)

    def numbered_lines(path: Any) -> tf.data.Dataset:
        # (line, line number, file) so that a malformed line can be named.
        lines = tf.data.TextLineDataset(path).skip(1)
        numbers = tf.data.Dataset.range(2, tf.int64.max)  # line 1 is the header
        return tf.data.Dataset.zip((lines, numbers, tf.data.Dataset.from_tensors(path).repeat()))

    ds = _interleave(paths, numbered_lines)
    rows = sum(_count_csv_rows(path) for path in paths) if count_rows else None
    return _finish(
        ds, shard_policy(len(paths)), batch_size, shuffle_buffer, seed, drop_remainder, decode, rows
    )


def _count_csv_rows(path: str) -> int:
    """The records `TextLineDataset(path).skip(1)` gives: lines after the
    header, a last line without a newline included."""
    lines, last = 0, b"\n"
    with tf.io.gfile.GFile(path, "rb") as f:
        while chunk := f.read(1 << 24):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    if last != b"\n":
        lines += 1
    return max(lines - 1, 0)


def _check_field_counts(lines: Any, numbers: Any, sources: Any, header: Sequence[str]) -> Any:
    """An assertion that every line of a batch has the header's number of
    fields, naming the file and line of the first that does not
    (`tf.io.decode_csv` says only "Expect 7 fields but have 6 in record 3",
    the record's index in its batch). Commas inside double quotes do not
    count."""
    unquoted = tf.strings.regex_replace(lines, r'"([^"]|"")*"', "")
    fields = tf.strings.length(tf.strings.regex_replace(unquoted, "[^,]", "")) + 1
    template = f"CSV file {{}} line {{}} has {{}} fields, but the header has {len(header)}"
    return _assert_every_line(tf.equal(fields, len(header)), template, (sources, numbers, fields))


def _assert_every_line(valid: Any, template: str, columns: tuple) -> Any:
    """An assertion that `valid` holds for every line of a batch; its
    message is `template` formatted with the first failing line's entry of
    each of `columns` (the file, the line number, ...)."""
    first = tf.argmax(tf.cast(tf.logical_not(valid), tf.int32))
    message = tf.strings.format(template, tuple(column[first] for column in columns))
    return tf.debugging.Assert(tf.reduce_all(valid), [message])


#: what `tf.strings.to_number` (and `decode_csv`) parse, as full matches
_NUMBER_PATTERNS = {
    "float": (
        r"\s*[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
        r"|0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?\d+)?"
        r"|(?i:nan|inf|infinity))\s*"
    ),
    # At most 18 digits: always an int64, whose range is then checked.
    "int": r"\s*[+-]?\d{1,18}\s*",
}


def _parse_column(
    field: Any, name: str, kind: str, default: Any, numbers: Any, sources: Any
) -> Any:
    """One CSV column of a batch from its strings: an empty field is the
    default, and a value that is no number of the column's type stops
    reading with an error naming the file, line, column and value
    (`decode_csv` says only "Field 3 in record 0 is not a valid float")."""
    if kind == "string":
        return field
    empty = tf.equal(field, "")
    valid = tf.logical_or(empty, tf.strings.regex_full_match(field, _NUMBER_PATTERNS[kind]))
    with tf.control_dependencies([_assert_valid(valid, field, name, kind, numbers, sources)]):
        as_numbers = tf.where(empty, "0", field)
        if kind == "float":
            parsed = tf.strings.to_number(as_numbers, tf.float32)
        else:
            wide = tf.strings.to_number(as_numbers, tf.int64)
            fits = tf.logical_and(wide >= -(2**31), wide < 2**31)
            check = _assert_valid(fits, field, name, "32-bit int", numbers, sources)
            with tf.control_dependencies([check]):
                parsed = tf.cast(wide, tf.int32)
    return tf.where(empty, default, parsed)


def _assert_valid(valid: Any, field: Any, name: str, kind: str, numbers: Any, sources: Any) -> Any:
    """An assertion that every value of a column is `valid`, naming the
    file, line, column and value of the first that is not."""
    column = name.replace("{}", "{ }")  # "{}" is a placeholder of the template
    template = (
        f"CSV file {{}} line {{}}: column '{column}' holds {{}}, which is no {kind} (set "
        "`column_kinds` if the column's type was inferred wrongly from the first rows)"
    )
    return _assert_every_line(valid, template, (sources, numbers, field))


def _interleave(paths: Sequence[str], reader: Any) -> Any:
    """Records of `paths` read by `reader(path)`, a few files at a time, in a
    deterministic order (every worker must see the same order to shard it)."""
    return tf.data.Dataset.from_tensor_slices(paths).interleave(
        reader,
        cycle_length=min(len(paths), 4),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


# ----------------------------------------------------------------- Parquet
def from_parquet(
    files: str | Sequence[str],
    feature_columns: Sequence[str],
    task_columns: Mapping[str, str],
    mask_columns: Mapping[str, str] | None = None,
    batch_size: int = 256,
    shuffle_buffer: int = 0,
    seed: int | None = None,
    drop_remainder: bool = False,
    read_batch_rows: int = 8192,
) -> tf.data.Dataset:
    """Sharded Parquet files -> a multi-task dataset (read with pyarrow,
    `read_batch_rows` rows at a time; only the needed columns).

    Types follow `from_pandas` on the first file's schema; a worker under
    MWMS reads only its own files when there are enough of them.

    Args:
        files: glob pattern, directory or list of Parquet files (same schema).
        feature_columns, task_columns, mask_columns, batch_size,
        shuffle_buffer, seed, drop_remainder: as for `from_csv`.
        read_batch_rows: rows per pyarrow record batch.

    Example:
    >>> import tempfile
    >>> import pandas as pd
    >>> df = pd.DataFrame({"age": [30.0, 41.0, 52.0], "job": ["a", "b", "a"],
    ...                    "income": [0.0, 1.0, 1.0]})
    >>> folder = tempfile.mkdtemp()
    >>> df.to_parquet(os.path.join(folder, "part-0.parquet"))
    >>> ds = from_parquet(os.path.join(folder, "*.parquet"), ["age", "job"],
    ...                   {"income": "income"}, batch_size=2)
    >>> x, y = next(iter(ds))
    >>> sorted(x), y["income"].numpy().tolist()
    (['age', 'job'], [0.0, 1.0])
    """
    import pyarrow.parquet as pq

    paths = list_files(files, ".parquet")
    first = pq.ParquetFile(paths[0])
    rows = 0
    for path in paths:
        metadata = first.metadata if path == paths[0] else pq.read_metadata(path)
        rows += metadata.num_rows
        names = metadata.schema.to_arrow_schema().names
        _check_columns(names, feature_columns, task_columns, mask_columns, path)
    wanted = list(
        dict.fromkeys([*feature_columns, *task_columns.values(), *(mask_columns or {}).values()])
    )
    sample = (
        first.read_row_group(0, columns=wanted).slice(0, 1000).to_pandas()
        if first.num_row_groups
        else None
    )
    kinds = _kinds_from_frame(sample, feature_columns, task_columns, mask_columns)
    dtypes = {"float": tf.float32, "int": tf.int32, "string": tf.string}
    signature = {c: tf.TensorSpec((None,), dtypes[kinds[c]]) for c in wanted}

    def arrays(frame: Any) -> dict[str, np.ndarray]:
        out = {}
        for c in wanted:
            try:
                if kinds[c] == "string":
                    out[c] = feature_array(frame[c])
                elif kinds[c] == "int":
                    out[c] = frame[c].fillna(-1).to_numpy(dtype="int32")
                else:
                    out[c] = frame[c].to_numpy(dtype="float32", na_value=np.nan)
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"column {c!r} ({frame[c].dtype}) is not {kinds[c]} as in the first file: {err}"
                ) from err
        return out

    def read(path: Any) -> Any:
        path = path.decode() if isinstance(path, bytes) else str(path)
        try:
            for batch in pq.ParquetFile(path).iter_batches(
                batch_size=read_batch_rows, columns=wanted
            ):
                yield arrays(batch.to_pandas())
        except Exception as err:  # tf.data shows only the message: name the file in it
            raise ValueError(f"Parquet file {path}: {type(err).__name__}: {err}") from err

    policy = shard_policy(len(paths))
    files_ds = tf.data.Dataset.from_tensor_slices(paths)
    if policy == _AUTOSHARD.FILE:
        # tf.data cannot see files inside a generator: shard them here.
        from mtl_keras.distribute.cluster import num_workers, task

        files_ds = files_ds.shard(num_workers(), task()[1])
        policy = _AUTOSHARD.OFF
    ds = files_ds.interleave(
        lambda p: tf.data.Dataset.from_generator(read, output_signature=signature, args=(p,)),
        cycle_length=1,
    ).unbatch()

    def decode(columns: Any) -> tuple:
        return _split(columns, feature_columns, task_columns, mask_columns)

    return _finish(ds, policy, batch_size, shuffle_buffer, seed, drop_remainder, decode, rows)


# ---------------------------------------------------------------- TFRecord
def write_tfrecords(
    frame: Any,
    directory: str,
    feature_columns: Sequence[str],
    task_columns: Mapping[str, str],
    mask_columns: Mapping[str, str] | None = None,
    num_shards: int = 8,
    prefix: str = "part",
    compression: str | None = None,
) -> list[str]:
    """Writes a DataFrame, or an iterable of DataFrame chunks, as `num_shards`
    TFRecord files of `tf.train.Example`s (rows dealt round-robin, so shards
    are balanced) plus `_schema.json`, which `from_tfrecords` reads. Types are
    those `from_pandas` gives the first chunk; later chunks must agree.

    Args:
        frame: a `pandas.DataFrame`, or an iterable of them (e.g.
            `pd.read_csv(path, chunksize=50_000)`: a table larger than memory
            is written one chunk at a time).
        directory: output directory (created).
        feature_columns, task_columns, mask_columns: as for `from_pandas`.
        num_shards: number of files.
        prefix: file name prefix.
        compression: None or "GZIP".

    Returns:
        The written file paths.

    Example:
    >>> import pandas as pd, tempfile
    >>> df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0.0, 1.0, float("nan")]})
    >>> paths = write_tfrecords(df, tempfile.mkdtemp(), ["x"], {"y": "y"}, num_shards=2)
    >>> len(paths)
    2
    >>> chunks = (df.iloc[i : i + 2] for i in range(0, 3, 2))  # streamed chunks
    >>> folder = tempfile.mkdtemp()
    >>> _ = write_tfrecords(chunks, folder, ["x"], {"y": "y"}, num_shards=2)
    >>> json.load(open(os.path.join(folder, SCHEMA_FILE)))["rows"]
    3
    """
    if num_shards < 1:
        raise ValueError(f"`num_shards` must be at least 1, got {num_shards}.")
    chunks = iter([frame] if hasattr(frame, "columns") else frame)
    first = next(chunks, None)
    if first is None:
        raise ValueError("write_tfrecords: no rows to write (an empty iterable of chunks).")
    _check_columns(list(first.columns), feature_columns, task_columns, mask_columns, "the frame")
    kinds = _kinds_from_frame(first, feature_columns, task_columns, mask_columns)
    os.makedirs(directory, exist_ok=True)
    paths = [
        os.path.join(directory, f"{prefix}-{i:05d}-of-{num_shards:05d}.tfrecord")
        for i in range(num_shards)
    ]
    options = tf.io.TFRecordOptions(compression_type=compression or "")
    writers = [tf.io.TFRecordWriter(p, options) for p in paths]
    rows = 0
    shard_rows = [0] * num_shards
    try:
        for number, chunk in enumerate(_chain(first, chunks)):
            where = "the frame" if number == 0 else f"chunk {number}"
            _check_columns(list(chunk.columns), feature_columns, task_columns, mask_columns, where)
            columns = _typed_columns(chunk, kinds, feature_columns, task_columns, mask_columns)
            for row in range(len(chunk)):
                feature = {c: _feature(kinds[c], values[row]) for c, values in columns.items()}
                example = tf.train.Example(features=tf.train.Features(feature=feature))
                shard = (rows + row) % num_shards
                writers[shard].write(example.SerializeToString())
                shard_rows[shard] += 1
            rows += len(chunk)
    finally:
        for w in writers:
            w.close()
    schema = {
        "columns": kinds,
        "feature_columns": list(feature_columns),
        "task_columns": dict(task_columns),
        "mask_columns": dict(mask_columns or {}),
        "compression": compression,
        "rows": rows,
        "shard_rows": {os.path.basename(p): n for p, n in zip(paths, shard_rows)},
    }
    # Written last: a directory with a schema holds complete shards.
    with open(os.path.join(directory, SCHEMA_FILE), "w") as f:
        json.dump(schema, f, indent=1)
    return paths


def _chain(first: Any, rest: Any) -> Any:
    yield first
    yield from rest


def _typed_columns(
    chunk: Any, kinds: Mapping[str, str], feature_columns, task_columns, mask_columns
) -> dict[str, np.ndarray]:
    """A chunk's columns typed as the schema says; a chunk that cannot be is an error."""
    columns: dict[str, np.ndarray] = {}
    for c in feature_columns:
        values = feature_array(chunk[c])
        if kinds[c] == "float" and values.dtype.kind != "f":
            raise ValueError(
                f"write_tfrecords: feature column {c!r} is numeric in the first chunk but "
                f"{chunk[c].dtype} in a later one."
            )
        if kinds[c] == "string" and values.dtype.kind == "f":
            raise ValueError(
                f"write_tfrecords: feature column {c!r} holds strings in the first chunk but "
                f"is {chunk[c].dtype} in a later one (read it with dtype=str)."
            )
        columns[c] = values
    for task, c in task_columns.items():
        values = label_array(chunk[c], task)
        if kinds[c] == "int" and values.dtype.kind != "i":
            raise ValueError(
                f"write_tfrecords: label column {c!r} (task {task!r}) is integer in the first "
                "chunk but has missing or non-integer values in a later one: mark missing "
                "integer labels with -1, or make the column float (NaN = unlabelled)."
            )
        columns[c] = values
    for c in (mask_columns or {}).values():
        columns[c] = chunk[c].to_numpy(dtype="float32", na_value=0.0)
    return columns


def _feature(kind: str, value: Any) -> Any:
    if kind == "string":
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(value).encode()]))
    if kind == "int":
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))


def from_tfrecords(
    files: str | Sequence[str],
    feature_columns: Sequence[str] | None = None,
    task_columns: Mapping[str, str] | None = None,
    mask_columns: Mapping[str, str] | None = None,
    batch_size: int = 256,
    shuffle_buffer: int = 0,
    seed: int | None = None,
    drop_remainder: bool = False,
    schema: Mapping[str, Any] | None = None,
    check_files: bool = True,
) -> tf.data.Dataset:
    """TFRecord shards written by `write_tfrecords` -> a multi-task dataset.

    The columns and their types come from `_schema.json` next to the files
    (or `schema`); `feature_columns`/`task_columns`/`mask_columns` default
    to the written ones and may select a subset.

    Args:
        files: glob pattern, directory or list of TFRecord files.
        feature_columns, task_columns, mask_columns: optional selections.
        batch_size, shuffle_buffer, seed, drop_remainder: as for `from_csv`.
        schema: the schema dict, when `_schema.json` is elsewhere.
        check_files: read the first record of every file now, so that a file
            of another schema fails here naming it (one small read per file;
            turn off for very many remote files).

    Example:
    >>> import tempfile
    >>> import pandas as pd
    >>> df = pd.DataFrame({"age": [30.0, 41.0, 52.0], "job": ["a", "b", "a"],
    ...                    "income": [0.0, 1.0, 1.0]})
    >>> folder = tempfile.mkdtemp()
    >>> _ = write_tfrecords(df, folder, ["age", "job"], {"income": "income"}, num_shards=1)
    >>> ds = from_tfrecords(folder, batch_size=3)
    >>> x, y = next(iter(ds))
    >>> sorted(x), y["income"].numpy().tolist()
    (['age', 'job'], [0.0, 1.0, 1.0])
    """
    paths = list_files(files, ".tfrecord")
    if schema is None:
        location = os.path.join(os.path.dirname(paths[0]), SCHEMA_FILE)
        if not os.path.exists(location):
            raise ValueError(
                f"No {SCHEMA_FILE} next to {paths[0]}: write the files with write_tfrecords "
                "or pass `schema`."
            )
        with open(location) as f:
            schema = json.load(f)
    kinds = schema["columns"]
    feature_columns = list(
        schema["feature_columns"] if feature_columns is None else feature_columns
    )
    task_columns = dict(schema["task_columns"] if task_columns is None else task_columns)
    if mask_columns is None:
        mask_columns = dict(schema.get("mask_columns") or {}) or None
    _check_columns(list(kinds), feature_columns, task_columns, mask_columns, "the TFRecord schema")
    dtypes = {"float": tf.float32, "int": tf.int64, "string": tf.string}
    wanted = list(
        dict.fromkeys([*feature_columns, *task_columns.values(), *(mask_columns or {}).values()])
    )
    spec = {c: tf.io.FixedLenFeature([], dtypes[kinds[c]]) for c in wanted}

    def decode(records: Any) -> tuple:
        columns = tf.io.parse_example(records, spec)
        columns = {c: tf.cast(v, tf.int32) if kinds[c] == "int" else v for c, v in columns.items()}
        return _split(columns, feature_columns, task_columns, mask_columns)

    compression = schema.get("compression") or ""
    for path in paths if check_files else ():
        _check_first_record(path, compression, {c: kinds[c] for c in wanted})
    ds = _interleave(paths, lambda f: tf.data.TFRecordDataset(f, compression_type=compression))
    counts = schema.get("shard_rows") or {}  # absent in schemas written before it
    names = [os.path.basename(p) for p in paths]
    rows = sum(counts[n] for n in names) if all(n in counts for n in names) else None
    return _finish(
        ds, shard_policy(len(paths)), batch_size, shuffle_buffer, seed, drop_remainder, decode, rows
    )


def verify_tfrecords(files: str | Sequence[str], compression: str | None = None) -> int:
    """Reads every record of every file: a corrupted or truncated shard raises
    an error naming it (during training, tf.data's `DataLossError` says only
    "corrupted record at <offset>"). Returns the number of records.

    Args:
        files: glob pattern, directory or list of TFRecord files.
        compression: None or "GZIP" (default: from `_schema.json` if present).

    Example:
    >>> import pandas as pd, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> _ = write_tfrecords(pd.DataFrame({"x": [1.0, 2.0, 3.0]}), folder, ["x"], {}, num_shards=2)
    >>> verify_tfrecords(folder)
    3
    """
    paths = list_files(files, ".tfrecord")
    if compression is None:
        location = os.path.join(os.path.dirname(paths[0]), SCHEMA_FILE)
        if os.path.exists(location):
            with open(location) as f:
                compression = json.load(f).get("compression")
    total = 0
    for path in paths:
        count = 0
        try:
            for _ in tf.data.TFRecordDataset(path, compression_type=compression or ""):
                count += 1
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as err:
            raise ValueError(
                f"TFRecord file {path} is damaged after {count} good records: {err.message}"
            ) from err
        total += count
    return total


_LISTS = {"float": "float_list", "int": "int64_list", "string": "bytes_list"}


def _check_first_record(path: str, compression: str, kinds: Mapping[str, str]) -> None:
    """Reads one record of `path`: a file that is not a TFRecord of this
    schema fails here, naming the file, instead of mid-training."""
    try:
        records = list(tf.data.TFRecordDataset(path, compression_type=compression).take(1))
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as err:
        raise ValueError(
            f"TFRecord file {path} cannot be read (compression={compression or None!r}): "
            f"{err.message}"
        ) from err
    if not records:
        return  # an empty shard (fewer rows than shards) is fine
    try:
        example = tf.train.Example.FromString(records[0].numpy())
    except Exception as err:  # protobuf raises its own DecodeError
        raise ValueError(f"TFRecord file {path} does not hold tf.train.Example records.") from err
    feature = example.features.feature
    bad = [
        c
        for c, k in kinds.items()
        if c not in feature or feature[c].WhichOneof("kind") != _LISTS[k]
    ]
    if bad:
        found = {c: feature[c].WhichOneof("kind") if c in feature else "missing" for c in bad}
        raise ValueError(
            f"TFRecord file {path} does not match the schema: its first record has {found}, "
            f"expected { ({c: _LISTS[kinds[c]] for c in bad}) }."
        )


# ------------------------------------------------------------------ adapt
def adapt_encoder(
    data: Any,
    categorical: Sequence[str] = (),
    numeric: Sequence[str] = (),
    min_count: int = 1,
    max_tokens: int | None = None,
    max_rows: int | None = None,
    num_bins: int = 32,
    bin_sample_rows: int = 100_000,
    seed: int = 0,
    **kwargs: Any,
) -> Any:
    """`TabularEncoder.adapt` from a dataset, streaming: vocabularies (counts)
    and numeric statistics (float64 sums) are accumulated batch by batch, so
    memory does not grow with the data. Same result as `TabularEncoder.adapt`
    on the same rows; with `numeric_encoding="piecewise_linear"` the quantile
    bin edges come from a uniform sample of `bin_sample_rows` rows (reservoir
    sampling; exact when the data has no more rows than that).

    Args:
        data: a dataset of `(features, ...)` batches (e.g. `from_tfrecords`)
            or of feature dicts.
        categorical, numeric, min_count, max_tokens, **kwargs: as for
            `TabularEncoder.adapt` (`log_features`, `numeric_encoding`,
            `bin_embedding_dim`, `name`, ...).
        max_rows: stop after this many rows (a streamed sample); None: all.
        num_bins: quantile bins per numeric feature (piecewise_linear).
        bin_sample_rows: rows kept to place the bin edges (memory:
            8 bytes x this x numeric features).
        seed: seed of the bin sample.

    Example:
    >>> ds = tf.data.Dataset.from_tensor_slices(
    ...     {"age": [30.0, 41.0, 52.0], "job": ["a", "b", "a"]}).batch(2)
    >>> enc = adapt_encoder(ds, categorical=["job"], numeric=["age"])
    >>> sorted(enc.inputs())
    ['age', 'job']
    >>> enc = adapt_encoder(ds, numeric=["age"], numeric_encoding="piecewise_linear",
    ...                     num_bins=2)
    >>> enc.bin_edges["age"]
    [30.0, 41.0, 52.0]
    """
    from mtl_keras.layers import TabularEncoder
    from mtl_keras.layers.numeric_embeddings import quantile_bin_edges

    counts = {name: Counter() for name in categorical}
    log_features = set(kwargs.get("log_features", ()))
    sums = {name: np.zeros(3, np.float64) for name in numeric}  # count, sum, sum of squares
    binned = kwargs.get("numeric_encoding") == "piecewise_linear" and "bin_edges" not in kwargs
    reservoir = _Reservoir(bin_sample_rows, seed) if binned and numeric else None
    rows = 0
    for batch in data:
        features = batch[0] if isinstance(batch, tuple) else batch
        missing = [f for f in [*categorical, *numeric] if f not in features]
        if missing:
            raise ValueError(f"adapt_encoder: features {missing} are not in the data.")
        n = int(tf.shape(features[next(iter(features))])[0])
        take = n if max_rows is None else min(n, max_rows - rows)
        for name in categorical:
            values = features[name].numpy()[:take].reshape(-1).tolist()
            # tf.string arrives as bytes; TabularEncoder.adapt sees str.
            counts[name].update(v.decode() if isinstance(v, bytes) else v for v in values)
        columns = []
        for name in numeric:
            values = features[name].numpy()[:take].astype("float64").reshape(-1)
            if name in log_features:
                values = np.sign(values) * np.log1p(np.abs(values))
            columns.append(values)
            values = values[~np.isnan(values)]
            sums[name] += [values.size, values.sum(), np.square(values).sum()]
        if reservoir is not None:
            reservoir.add(np.stack(columns, axis=1))
        rows += take
        if max_rows is not None and rows >= max_rows:
            break
    if not rows:
        raise ValueError("adapt_encoder: the data has no rows.")
    vocabularies = {}
    for name, c in counts.items():
        kept = [v for v, k in c.most_common(max_tokens) if k >= min_count]
        vocabularies[name] = sorted(kept, key=lambda v: (-c[v], str(v)))
    stats = {}
    for name, (count, total, squares) in sums.items():
        mean = total / count if count else float("nan")
        var = max(squares / count - mean * mean, 0.0) if count else float("nan")
        std = float(np.sqrt(var))
        stats[name] = [float(mean), std if std > 0 else 1.0]
    if reservoir is not None:
        sample = reservoir.values()
        kwargs["bin_edges"] = {
            name: quantile_bin_edges(sample[:, j], num_bins) for j, name in enumerate(numeric)
        }
    return TabularEncoder(vocabularies=vocabularies, numeric_stats=stats, **kwargs)


class _Reservoir:
    """A uniform sample of at most `size` rows of a stream (Algorithm R)."""

    def __init__(self, size: int, seed: int) -> None:
        if size < 1:
            raise ValueError(f"`bin_sample_rows` must be at least 1, got {size}.")
        self.size, self.seen, self.rng = size, 0, np.random.default_rng(seed)
        self.rows: np.ndarray | None = None

    def add(self, block: np.ndarray) -> None:
        if self.rows is None:
            self.rows = np.empty((self.size, block.shape[1]), np.float64)
        fill = min(self.size - min(self.seen, self.size), len(block))
        self.rows[self.seen : self.seen + fill] = block[:fill]
        rest = block[fill:]
        if len(rest):
            # Row number i (0-based) of the stream replaces a random slot with probability size/(i+1).
            index = self.seen + fill + np.arange(len(rest))
            slots = (self.rng.random(len(rest)) * (index + 1)).astype(np.int64)
            keep = slots < self.size
            self.rows[slots[keep]] = rest[keep]
        self.seen += len(block)

    def values(self) -> np.ndarray:
        return self.rows[: min(self.seen, self.size)]
