"""Versioned, atomic SavedModel export for TensorFlow Serving.

TF Serving watches `base_dir` and loads every all-digit subdirectory as a
model version. It may look at the directory at any moment, so a version must
appear complete or not at all: the export is written into a hidden sibling
directory (`base_dir/.tmp-<version>-<random>`, ignored by TF Serving because
its name is not a number) and then renamed into place, which is atomic on
POSIX file systems when both paths are on the same file system.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import keras
import tensorflow as tf

from mtl_keras._version import __version__
from mtl_keras.export.signature import (
    INPUT_NAME_RE,
    METADATA_FILE,
    METADATA_FORMAT_VERSION,
    SIGNATURE_NAME,
    functional_io,
    input_names,
    input_signature,
    input_specs,
)
from mtl_keras.model import MultiTaskModel

__all__ = [
    "METADATA_FILE",
    "SIGNATURE_NAME",
    "ConcurrentExportError",
    "check_model",
    "existing_versions",
    "export_saved_model",
    "input_signature",
    "recover_versions",
    "write_saved_model",
]

_VERSION_RE = re.compile(r"^[0-9]+$")
LOCK_FILE = ".mtl_keras.lock"
# Hidden work directories (not numbers, so TF Serving ignores them):
# .tmp-<version|next>-<pid>-<random> while writing, .old-<version>-<pid>-<random>
# while an overwritten version is moved aside (only without RENAME_EXCHANGE).
_WORK_RE = re.compile(r"^\.(tmp|old)-([0-9]+|next)-(?:([0-9]+)-)?")
# A work directory without a pid in its name (older releases) is stale after this.
_STALE_SECONDS = 3600.0


class ConcurrentExportError(FileExistsError):
    """Another export published the same version while this one was written."""


def export_saved_model(
    model: keras.Model,
    base_dir: str | os.PathLike[str],
    version: int | None = None,
    *,
    overwrite: bool = False,
    signatures: Mapping[str, Sequence[str]] | None = None,
    warmup_examples: Mapping[str, Any] | None = None,
) -> str:
    """Exports `model` as `base_dir/<version>/`, the layout TF Serving watches.

    The SavedModel has one signature, `serving_default`, that takes the raw
    model inputs (same names and dtypes as the functional inputs, batch
    dimension `None`) and returns one output per task, keyed by task name.
    `assets.extra/mtl_keras.json` describes the tasks (names, types, what each
    output means); TF Serving ignores `assets.extra/`.

    The version directory appears atomically: everything is written into a
    temporary sibling `base_dir/.tmp-<version>-<pid>-<random>`, fsynced, and
    renamed into place at the end (removed if anything fails). Choosing the
    version and publishing happen under a lock file (`base_dir/.mtl_keras.lock`),
    so concurrent exports with `version=None` get distinct versions. With
    `overwrite=True` the old and new directories are swapped in one atomic
    `renameat2(RENAME_EXCHANGE)` on Linux, so the version never disappears;
    elsewhere the old one is moved aside first and, if the process dies in
    between, restored by the next export (`recover_versions`). If another
    export published the same version while this one was being written,
    `ConcurrentExportError` is raised and nothing is published (never two
    writers both told they won). Leftovers of killed exports are removed.
    `base_dir` must be on a local (POSIX) file system.

    Args:
        model: a `MultiTaskModel`, or a functional `keras.Model` whose outputs
            are a dict keyed by output name.
        base_dir: the model's base directory (created if missing).
        version: a positive integer; `None` uses one more than the largest
            existing numeric version (1 for an empty directory).
        overwrite: replace an existing `base_dir/<version>` instead of raising.
        signatures: extra signatures serving a subset of the tasks, e.g.
            `{"income_only": ["income"]}`: same inputs as `serving_default`,
            only the listed outputs (clients that need one task do not pay
            for transferring the others).
        warmup_examples: a few raw example rows (dict feature -> array with a
            batch dimension). Written as
            `assets.extra/tf_serving_warmup_requests` (TFRecord of
            `PredictionLog`), which TF Serving replays before marking the
            version available, so the first real request is not slow.

    Returns:
        The path of the version directory, `base_dir/<version>`.

    Example:
    >>> import os, tempfile
    >>> import keras
    >>> import tensorflow as tf
    >>> from mtl_keras import Binary, Regression, builders
    >>> from mtl_keras.export import export_saved_model
    >>> model = builders.shared_bottom(
    ...     keras.Input((4,), name="x"), [Binary("click"), Regression("dwell")],
    ...     trunk_units=(8,), tower_units=())
    >>> base = tempfile.mkdtemp()
    >>> path = export_saved_model(model, base)
    >>> os.path.basename(path)
    '1'
    >>> serve = tf.saved_model.load(path).signatures["serving_default"]
    >>> sorted(serve(x=tf.zeros((2, 4))))
    ['click', 'dwell']
    """
    check_model(model)
    signatures = _check_signatures(model, signatures)
    if not isinstance(base_dir, (str, os.PathLike)):
        raise ValueError(
            f"`base_dir` must be a path (str or os.PathLike), got {type(base_dir).__name__}."
        )
    base_dir = os.fspath(base_dir)
    if not base_dir:
        raise ValueError("`base_dir` must be a non-empty path.")
    if version is not None and (
        isinstance(version, bool) or not isinstance(version, int) or version < 1
    ):
        raise ValueError(
            f"`version` must be a positive integer (TF Serving versions are "
            f"numbers) or None for the next version, got {version!r}."
        )
    if os.path.exists(base_dir) and not os.path.isdir(base_dir):
        raise ValueError(f"`base_dir` {base_dir!r} exists and is not a directory.")
    os.makedirs(base_dir, exist_ok=True)
    recover_versions(base_dir)

    # What the target looked like when this export started: at publish time a
    # different directory there means another writer published meanwhile.
    before = _identity(os.path.join(base_dir, str(version))) if version is not None else None
    if before is not None and not overwrite:
        raise _exists_error(base_dir, version)

    tag = "next" if version is None else str(version)
    tmp_dir = tempfile.mkdtemp(prefix=f".tmp-{tag}-{os.getpid()}-", dir=base_dir)
    try:
        write_saved_model(model, tmp_dir, signatures)
        _write_metadata(model, tmp_dir, signatures)
        if warmup_examples is not None:
            from mtl_keras.export.warmup import write_warmup_requests

            write_warmup_requests(
                tmp_dir,
                warmup_examples,
                input_signature(model),
                [SIGNATURE_NAME, *signatures],
            )
        _fsync_tree(tmp_dir)
        with _locked(base_dir):
            if version is None:
                version = max(existing_versions(base_dir), default=0) + 1
            final_dir = os.path.join(base_dir, str(version))
            now = _identity(final_dir)
            if now is not None and not overwrite:
                raise _exists_error(base_dir, version, concurrently=True)
            if overwrite and now != before:
                raise ConcurrentExportError(
                    f"Version {version} at {final_dir!r} was published by another export "
                    "while this one was being written (two writers with overwrite=True); "
                    "this export was not published. Retry to replace it again."
                )
            _publish(tmp_dir, final_dir, base_dir, version, overwrite)
            _fsync_dir(base_dir)
    finally:
        # Whatever happened, the temporary directory must not outlive the call
        # (after a swap it holds the replaced version).
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return final_dir


def existing_versions(base_dir: str | os.PathLike[str]) -> list[int]:
    """The numeric version directories under `base_dir`, sorted.

    Example:
    >>> import tempfile
    >>> existing_versions(tempfile.mkdtemp())
    []
    """
    base_dir = os.fspath(base_dir)
    if not os.path.isdir(base_dir):
        return []
    return sorted(
        int(name)
        for name in os.listdir(base_dir)
        if _VERSION_RE.match(name) and os.path.isdir(os.path.join(base_dir, name))
    )


def recover_versions(base_dir: str | os.PathLike[str]) -> list[str]:
    """Repairs what killed exports left in `base_dir`; returns what it did.

    Under the export lock (so no export is publishing meanwhile): a version
    moved aside by an interrupted `overwrite=True` (`.old-<v>-*` while `<v>`
    is missing) is renamed back; other `.old-*` directories are removed, and
    so are `.tmp-*` directories whose process is gone. `export_saved_model`
    calls it first; call it before serving a directory exports were killed in.

    Args:
        base_dir: the model's base directory.

    Example:
    >>> import tempfile
    >>> base = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(base, ".old-3-999999999-ab12"))
    >>> recover_versions(base), existing_versions(base)
    (['restored version 3 from .old-3-999999999-ab12'], [3])
    """
    base_dir = os.fspath(base_dir)
    if not os.path.isdir(base_dir):
        return []
    actions = []
    with _locked(base_dir):
        for name in sorted(os.listdir(base_dir)):
            match = _WORK_RE.match(name)
            path = os.path.join(base_dir, name)
            if match is None or not os.path.isdir(path):
                continue
            kind, version, pid = match.groups()
            if kind == "old":
                final_dir = os.path.join(base_dir, version)
                if not os.path.exists(final_dir):
                    os.rename(path, final_dir)
                    actions.append(f"restored version {version} from {name}")
                    continue
            elif not _stale(path, pid):
                continue  # an export in progress
            shutil.rmtree(path, ignore_errors=True)
            actions.append(f"removed {name}")
        if actions:
            _fsync_dir(base_dir)
    return actions


def check_model(model: Any) -> None:
    """Raises ValueError unless `model` can be exported: functional, outputs a
    dict keyed by task name, inputs named as a signature can name them."""
    _, outputs = functional_io(model)
    if not isinstance(outputs, dict):
        raise ValueError(
            "`model` outputs must be a dict keyed by task name (one named output "
            f"per task), got {type(outputs).__name__}."
        )
    for name in input_names(model):
        if not INPUT_NAME_RE.match(name):
            raise ValueError(
                f"Model input name {name!r} cannot name a SavedModel signature "
                "input; use letters, digits, '_', '.', '-' or '/'."
            )


def write_saved_model(
    model: keras.Model, path: str, signatures: Mapping[str, Sequence[str]] | None = None
) -> None:
    """Writes the SavedModel (`serving_default` + subset signatures) to `path`."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    specs = input_specs(model)
    archive.add_endpoint(SIGNATURE_NAME, _serving_fn(model), input_signature=specs)
    for name, tasks in (signatures or {}).items():
        archive.add_endpoint(name, _serving_fn(model, tasks), input_signature=specs)
    # Layers may add signatures with other inputs, e.g. ModalityStack: one per
    # set of modalities a request may omit (builders.fusion_serving).
    for layer in model.layers:
        if not hasattr(layer, "serving_endpoints"):
            continue
        for name, (fn, layer_specs) in layer.serving_endpoints(model).items():
            if name == SIGNATURE_NAME or name in (signatures or {}):
                raise ValueError(
                    f"Signature name {name!r} is taken by the model's {layer.name!r} layer "
                    "(it serves requests without some modalities); rename your signature."
                )
            archive.add_endpoint(name, fn, input_signature=layer_specs)
    archive.write_out(path, verbose=False)


# ---------------------------------------------------------------- internals
def _check_signatures(
    model: keras.Model, signatures: Mapping[str, Sequence[str]] | None
) -> dict[str, list[str]]:
    if signatures is None:
        return {}
    if not isinstance(signatures, Mapping):
        raise ValueError(
            "`signatures` must be a dict signature name -> list of task names, "
            f"got {type(signatures).__name__}."
        )
    outputs = list(model.output)
    checked = {}
    for name, tasks in signatures.items():
        if not isinstance(name, str) or not INPUT_NAME_RE.match(name):
            raise ValueError(f"Invalid signature name {name!r}.")
        if name == SIGNATURE_NAME:
            raise ValueError(f"Signature {name!r} is reserved for the all-tasks signature.")
        if isinstance(tasks, str) or not isinstance(tasks, Sequence) or not tasks:
            raise ValueError(
                f"Signature {name!r}: expected a non-empty list of task names, got {tasks!r}."
            )
        unknown = [t for t in tasks if t not in outputs]
        if unknown:
            raise ValueError(
                f"Signature {name!r}: unknown task(s) {unknown}; the model's tasks are {outputs}."
            )
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"Signature {name!r}: duplicate task names in {list(tasks)}.")
        checked[name] = list(tasks)
    return checked


def _serving_fn(model: keras.Model, tasks: Sequence[str] | None = None) -> Any:
    struct = model.input
    names = input_names(model)

    # Flat, named positional arguments give the signature one input per raw
    # feature named after it (rather than one nested structure).
    def serve(*args: Any) -> dict[str, Any]:
        if isinstance(struct, dict):
            inputs = dict(zip(names, args))
        else:
            inputs = keras.tree.pack_sequence_as(struct, list(args))
        outputs = dict(model(inputs, training=False))
        return outputs if tasks is None else {t: outputs[t] for t in tasks}

    return serve


def _metadata(
    model: keras.Model, signatures: Mapping[str, Sequence[str]] | None = None
) -> dict[str, Any]:
    tasks_by_name = {t.name: t for t in getattr(model, "tasks", [])}
    tasks = []
    for name, tensor in model.output.items():
        task = tasks_by_name.get(name)
        tasks.append(
            {
                "name": name,
                "type": type(task).__name__ if task is not None else None,
                "output": task.describe_output()
                if task is not None
                else f"raw model output, shape (batch, {tensor.shape[-1]})",
                "output_shape": [None, *tensor.shape[1:]],
                "config": task.get_config() if task is not None else None,
            }
        )
    metadata = {
        "format_version": METADATA_FORMAT_VERSION,
        "mtl_keras_version": __version__,
        "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
        "model_name": model.name,
        "model_class": type(model).__name__,
        "is_multi_task_model": isinstance(model, MultiTaskModel),
        "signature": SIGNATURE_NAME,
        # Every signature -> the task outputs it returns (the same inputs for
        # all, except the "modality_signatures" a fusion layer lists below).
        "signatures": {
            SIGNATURE_NAME: list(model.output),
            **{k: list(v) for k, v in (signatures or {}).items()},
        },
        "inputs": [
            {"name": s.name, "dtype": s.dtype.name, "shape": list(s.shape.as_list())}
            for s in input_specs(model)
        ],
        "tasks": tasks,
    }
    for layer in model.layers:
        # Layers may describe their inputs to clients, e.g. ModalityStack:
        # which inputs form each modality (requests may omit a modality).
        if hasattr(layer, "serving_metadata"):
            metadata.update(layer.serving_metadata())
    for name in metadata.get("modality_signatures", {}):
        metadata["signatures"][name] = list(model.output)
    return metadata


def _write_metadata(
    model: keras.Model, path: str, signatures: Mapping[str, Sequence[str]] | None = None
) -> None:
    extra = os.path.join(path, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    with open(os.path.join(extra, METADATA_FILE), "w", encoding="utf-8") as f:
        # default=str: custom losses/metrics may carry non-JSON config values.
        json.dump(_metadata(model, signatures), f, indent=2, sort_keys=True, default=str)


def _exists_error(base_dir: str, version: int, concurrently: bool = False) -> FileExistsError:
    how = " (another export created it while this one was written)" if concurrently else ""
    return FileExistsError(
        f"Version {version} already exists at {os.path.join(base_dir, str(version))!r}{how}; "
        "pass a new `version`, `version=None` for the next one, or `overwrite=True`."
    )


def _identity(path: str) -> tuple[int, int, int] | None:
    """Which directory is at `path` now (None: nothing)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_ctime_ns)


@contextlib.contextmanager
def _locked(base_dir: str) -> Iterator[None]:
    """An exclusive advisory lock on `base_dir/.mtl_keras.lock` (POSIX flock)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no cross-process lock
        yield
        return
    fd = os.open(os.path.join(base_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _stale(path: str, pid: str | None) -> bool:
    """A `.tmp-*` directory whose export process is gone."""
    if pid is None:
        try:
            return time.time() - os.stat(path).st_mtime > _STALE_SECONDS
        except FileNotFoundError:
            return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _fsync_tree(root: str) -> None:
    """Flushes every file and directory under `root` to disk before publishing."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(dirpath)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: str, b: str) -> bool:
    """Atomically swaps two paths (Linux `renameat2(RENAME_EXCHANGE)`).

    Returns False where unsupported (other OS, old libc or kernel, file system
    without it) so the caller falls back to two renames.
    """
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), b)


def _publish(tmp_dir: str, final_dir: str, base_dir: str, version: int, overwrite: bool) -> None:
    """Puts `tmp_dir` at `final_dir` (caller holds the lock)."""
    if overwrite and os.path.exists(final_dir):
        # After the swap tmp_dir holds the old version; the caller removes it.
        if not _exchange(tmp_dir, final_dir):
            _replace_in_two_renames(tmp_dir, final_dir, base_dir, version)
        return
    try:
        os.rename(tmp_dir, final_dir)
    except OSError as e:
        raise FileExistsError(f"Could not publish version {version} at {final_dir!r}: {e}") from e


def _replace_in_two_renames(tmp_dir: str, final_dir: str, base_dir: str, version: int) -> None:
    # rename() cannot replace a non-empty directory: move the old version
    # aside (to a non-numeric name TF Serving ignores) first. A crash between
    # the two renames is repaired by recover_versions (the old one comes back).
    old_dir = os.path.join(base_dir, f".old-{version}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.rename(final_dir, old_dir)
    try:
        os.rename(tmp_dir, final_dir)
    except OSError as e:
        os.rename(old_dir, final_dir)
        raise FileExistsError(f"Could not publish version {version} at {final_dir!r}: {e}") from e
    _fsync_dir(base_dir)
    shutil.rmtree(old_dir, ignore_errors=True)
