"""Versioned, atomic SavedModel export for TensorFlow Serving.

TF Serving watches `base_dir` and loads every all-digit subdirectory as a
model version. It may look at the directory at any moment, so a version must
appear complete or not at all: the export is written into a hidden sibling
directory (`base_dir/.tmp-<version>-<random>`, ignored by TF Serving because
its name is not a number) and then renamed into place, which is atomic on
POSIX file systems when both paths are on the same file system.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from typing import Any, Mapping, Sequence

import keras
import tensorflow as tf
from keras.src.models.functional import Functional

from mtl_keras.model import MultiTaskModel
from mtl_keras.tasks import (
    Binary,
    BoxRegression,
    Multiclass,
    Multilabel,
    Regression,
    Tagging,
    Task,
)

SIGNATURE_NAME = "serving_default"
METADATA_FILE = "mtl_keras.json"
METADATA_FORMAT_VERSION = 1

_VERSION_RE = re.compile(r"^[0-9]+$")
# Signature input names become TF placeholder op names.
_INPUT_NAME_RE = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\-/]*$")


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
    temporary sibling `base_dir/.tmp-<version>-<random>` that is renamed into
    place at the end and removed if anything fails. With `overwrite=True` an
    existing version is first moved aside and deleted after the new one is in
    place, so that version number is briefly absent (never half-written).
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
    _check_model(model)
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

    if version is None:
        version = max(existing_versions(base_dir), default=0) + 1
    final_dir = os.path.join(base_dir, str(version))
    if os.path.exists(final_dir) and not overwrite:
        raise FileExistsError(
            f"Version {version} already exists at {final_dir!r}; pass a new "
            "`version`, `version=None` for the next one, or `overwrite=True`."
        )

    tmp_dir = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=base_dir)
    try:
        _write_saved_model(model, tmp_dir, signatures)
        _write_metadata(model, tmp_dir, signatures)
        if warmup_examples is not None:
            from mtl_keras.export.warmup import write_warmup_requests

            write_warmup_requests(
                tmp_dir,
                warmup_examples,
                input_signature(model),
                [SIGNATURE_NAME, *signatures],
            )
        _publish(tmp_dir, final_dir, base_dir, version, overwrite)
    finally:
        # Whatever happened, the temporary directory must not outlive the call.
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return final_dir


def existing_versions(base_dir: str | os.PathLike[str]) -> list[int]:
    """The numeric version directories under `base_dir`, sorted."""
    base_dir = os.fspath(base_dir)
    if not os.path.isdir(base_dir):
        return []
    return sorted(
        int(name)
        for name in os.listdir(base_dir)
        if _VERSION_RE.match(name) and os.path.isdir(os.path.join(base_dir, name))
    )


def input_signature(model: keras.Model) -> dict[str, tf.TensorSpec]:
    """The serving signature's inputs of `model`: name -> `tf.TensorSpec`."""
    return {s.name: s for s in _input_specs(model)}


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
    outputs = list(model._outputs_struct)
    checked = {}
    for name, tasks in signatures.items():
        if not isinstance(name, str) or not _INPUT_NAME_RE.match(name):
            raise ValueError(f"Invalid signature name {name!r}.")
        if name == SIGNATURE_NAME:
            raise ValueError(
                f"Signature {name!r} is reserved for the all-tasks signature."
            )
        if isinstance(tasks, str) or not isinstance(tasks, Sequence) or not tasks:
            raise ValueError(
                f"Signature {name!r}: expected a non-empty list of task names, got {tasks!r}."
            )
        unknown = [t for t in tasks if t not in outputs]
        if unknown:
            raise ValueError(
                f"Signature {name!r}: unknown task(s) {unknown}; the model's tasks "
                f"are {outputs}."
            )
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"Signature {name!r}: duplicate task names in {list(tasks)}.")
        checked[name] = list(tasks)
    return checked


def _check_model(model: Any) -> None:
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"`model` must be a MultiTaskModel or a functional keras.Model, got "
            f"{type(model).__name__}."
        )
    if not isinstance(model, Functional):
        raise ValueError(
            f"`model` must be functional (built from keras.Input), got the "
            f"subclassed model {type(model).__name__}: its inputs and outputs "
            "cannot be inferred for the serving signature."
        )
    if not isinstance(model._outputs_struct, dict):
        raise ValueError(
            "`model` outputs must be a dict keyed by task name (one named output "
            f"per task), got {type(model._outputs_struct).__name__}."
        )
    for name in _input_names(model):
        if not _INPUT_NAME_RE.match(name):
            raise ValueError(
                f"Model input name {name!r} cannot name a SavedModel signature "
                "input; use letters, digits, '_', '.', '-' or '/'."
            )


def _input_names(model: keras.Model) -> list[str]:
    struct = model._inputs_struct
    if isinstance(struct, dict):
        # A dict-input model is called with that dict, so its keys are the
        # names clients send.
        return list(struct)
    return [t.name for t in tf.nest.flatten(struct)]


def _input_specs(model: keras.Model) -> list[tf.TensorSpec]:
    struct = model._inputs_struct
    flat = [struct[k] for k in struct] if isinstance(struct, dict) else tf.nest.flatten(struct)
    return [
        tf.TensorSpec((None, *tuple(t.shape[1:])), t.dtype, name=name)
        for name, t in zip(_input_names(model), flat)
    ]


def _serving_fn(model: keras.Model, tasks: Sequence[str] | None = None) -> Any:
    struct = model._inputs_struct
    names = _input_names(model)

    # Flat, named positional arguments give the signature one input per raw
    # feature named after it (rather than one nested structure).
    def serve(*args: Any) -> dict[str, Any]:
        if isinstance(struct, dict):
            inputs = dict(zip(names, args))
        else:
            inputs = tf.nest.pack_sequence_as(struct, list(args))
        outputs = dict(model(inputs, training=False))
        return outputs if tasks is None else {t: outputs[t] for t in tasks}

    return serve


def _write_saved_model(
    model: keras.Model, path: str, signatures: Mapping[str, Sequence[str]] | None = None
) -> None:
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(SIGNATURE_NAME, _serving_fn(model), input_signature=_input_specs(model))
    for name, tasks in (signatures or {}).items():
        archive.add_endpoint(
            name, _serving_fn(model, tasks), input_signature=_input_specs(model)
        )
    archive.write_out(path, verbose=False)


def _output_meaning(task: Task | None, units: int | None) -> str:
    if isinstance(task, Binary):
        return "probability that the label is 1 (sigmoid), shape (batch, 1)"
    if isinstance(task, Multiclass):
        return (
            f"class probabilities (softmax over {task.num_classes} classes), "
            f"shape (batch, {task.num_classes}); argmax is the predicted class id"
        )
    if isinstance(task, Multilabel):
        return (
            f"independent per-label probabilities (sigmoid), shape (batch, {task.num_labels})"
        )
    if isinstance(task, Tagging):
        return (
            f"per-token tag probabilities (softmax over {task.num_tags} tags), "
            f"shape (batch, seq_len, {task.num_tags}); argmax is the predicted tag id"
        )
    if isinstance(task, BoxRegression):
        return (
            f"one normalized box per row in {task.box_format!r} format (sigmoid), "
            "shape (batch, 4)"
        )
    if isinstance(task, Regression):
        return f"predicted value(s) in label units, shape (batch, {task.units})"
    return f"raw model output, shape (batch, {units})"


def _metadata(
    model: keras.Model, signatures: Mapping[str, Sequence[str]] | None = None
) -> dict[str, Any]:
    tasks_by_name = {t.name: t for t in getattr(model, "tasks", [])}
    tasks = []
    for name, tensor in model._outputs_struct.items():
        task = tasks_by_name.get(name)
        units = tensor.shape[-1]
        tasks.append(
            {
                "name": name,
                "type": type(task).__name__ if task is not None else None,
                "output": _output_meaning(task, units),
                "output_shape": [None, *tensor.shape[1:]],
                "config": task.get_config() if task is not None else None,
            }
        )
    import mtl_keras  # late: safe even if the package root imports this module

    metadata = {
        "format_version": METADATA_FORMAT_VERSION,
        "mtl_keras_version": mtl_keras.__version__,
        "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
        "model_name": model.name,
        "model_class": type(model).__name__,
        "is_multi_task_model": isinstance(model, MultiTaskModel),
        "signature": SIGNATURE_NAME,
        # Every signature -> the task outputs it returns (same inputs for all).
        "signatures": {
            SIGNATURE_NAME: list(model._outputs_struct),
            **{k: list(v) for k, v in (signatures or {}).items()},
        },
        "inputs": [
            {"name": s.name, "dtype": s.dtype.name, "shape": list(s.shape.as_list())}
            for s in _input_specs(model)
        ],
        "tasks": tasks,
    }
    for layer in model.layers:
        # Layers may describe their inputs to clients, e.g. ModalityStack:
        # which inputs form each modality (requests may omit a modality).
        if hasattr(layer, "serving_metadata"):
            metadata.update(layer.serving_metadata())
    return metadata


def _write_metadata(
    model: keras.Model, path: str, signatures: Mapping[str, Sequence[str]] | None = None
) -> None:
    extra = os.path.join(path, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    with open(os.path.join(extra, METADATA_FILE), "w", encoding="utf-8") as f:
        # default=str: custom losses/metrics may carry non-JSON config values.
        json.dump(_metadata(model, signatures), f, indent=2, sort_keys=True, default=str)


def _publish(tmp_dir: str, final_dir: str, base_dir: str, version: int, overwrite: bool) -> None:
    old_dir = None
    if overwrite and os.path.exists(final_dir):
        # rename() cannot replace a non-empty directory: move the old version
        # aside (to a non-numeric name TF Serving ignores) first.
        old_dir = os.path.join(base_dir, f".old-{version}-{uuid.uuid4().hex[:8]}")
        os.rename(final_dir, old_dir)
    try:
        os.rename(tmp_dir, final_dir)
    except OSError as e:
        if old_dir is not None:
            os.rename(old_dir, final_dir)
        raise FileExistsError(
            f"Could not publish version {version} at {final_dir!r} (another "
            f"export may have created it concurrently): {e}"
        ) from e
    if old_dir is not None:
        shutil.rmtree(old_dir, ignore_errors=True)
