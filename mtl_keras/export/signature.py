"""The serving signature: names, input specs, and reading them back.

A leaf module (no other `mtl_keras` import): the exporter, the request
checks, the warm-up writer and the self-check all take their constants and
input specs from here, so none of them imports another to get them.
TensorFlow and Keras are imported inside the functions that need them, so
reading the constants costs nothing.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import keras
    import tensorflow as tf

SIGNATURE_NAME = "serving_default"
SERVE_TAG = "serve"
METADATA_FILE = "mtl_keras.json"
METADATA_FORMAT_VERSION = 1
# Signature input names become TF placeholder op names.
INPUT_NAME_RE = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\-/]*$")

SignatureSpec = Mapping[str, "tf.TensorSpec"]


class SavedModelError(ValueError):
    """A SavedModel directory is missing, truncated or corrupt, or its
    `assets.extra/mtl_keras.json` disagrees with the signature it describes."""


# ------------------------------------------------------------ from a model
def functional_io(model: Any) -> tuple[Any, Any]:
    """`(model.input, model.output)` of a functional Keras model.

    Raises ValueError for anything else (a subclassed model has no symbolic
    inputs and outputs to build a signature from).
    """
    import keras

    if not isinstance(model, keras.Model):
        raise ValueError(
            f"`model` must be a MultiTaskModel or a functional keras.Model, got "
            f"{type(model).__name__}."
        )
    try:
        inputs, outputs = model.input, model.output
    except (AttributeError, ValueError) as e:
        inputs = outputs = e
    flat = keras.tree.flatten(inputs) if not isinstance(inputs, Exception) else []
    if not flat or not all(isinstance(t, keras.KerasTensor) for t in flat):
        raise ValueError(
            f"`model` must be functional (built from keras.Input), got the "
            f"subclassed model {type(model).__name__}: its inputs and outputs "
            "cannot be inferred for the serving signature."
        )
    return inputs, outputs


def input_names(model: keras.Model) -> list[str]:
    """The signature's input names: a dict-input model's keys, else tensor names."""
    import keras

    struct, _ = functional_io(model)
    if isinstance(struct, dict):
        # A dict-input model is called with that dict, so its keys are the
        # names clients send.
        return list(struct)
    return [t.name for t in keras.tree.flatten(struct)]


def input_specs(model: keras.Model) -> list[tf.TensorSpec]:
    """One `tf.TensorSpec` per raw input (batch dimension `None`), in call order."""
    import keras
    import tensorflow as tf

    struct, _ = functional_io(model)
    flat = [struct[k] for k in struct] if isinstance(struct, dict) else keras.tree.flatten(struct)
    return [
        tf.TensorSpec((None, *tuple(t.shape[1:])), t.dtype, name=name)
        for name, t in zip(input_names(model), flat)
    ]


def input_signature(model: keras.Model) -> dict[str, tf.TensorSpec]:
    """The serving signature's inputs of `model`: name -> `tf.TensorSpec`.

    Example:
    >>> import keras
    >>> x = keras.Input((3,), name="x")
    >>> model = keras.Model(x, {"y": keras.layers.Dense(1)(x)})
    >>> input_signature(model)["x"].shape.as_list()
    [None, 3]
    """
    return {s.name: s for s in input_specs(model)}


# ----------------------------------------------------------- from a path
def saved_model_signatures(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Tags and signatures of a SavedModel, read from `saved_model.pb` only.

    Args:
        path: a SavedModel (version) directory.

    Returns:
        `{"tags": [[...] per meta graph], "signatures": {name: {"method",
        "inputs": {key: {"dtype", "shape", "tensor"}}, "outputs": {...}}}}`
        for the `serve` meta graph.

    Raises:
        SavedModelError: no `saved_model.pb`, a truncated or corrupt one, or
            no meta graph tagged `serve`.

    Example:
    >>> import tempfile
    >>> saved_model_signatures(tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    mtl_keras.export.signature.SavedModelError: No saved_model.pb in ...
    """
    import tensorflow as tf
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    pb_path = os.path.join(os.fspath(path), "saved_model.pb")
    if not os.path.isfile(pb_path):
        raise SavedModelError(f"No saved_model.pb in {os.fspath(path)!r}: not a SavedModel.")
    proto = saved_model_pb2.SavedModel()
    with open(pb_path, "rb") as f:
        data = f.read()
    try:
        proto.ParseFromString(data)
    except DecodeError as e:
        raise SavedModelError(
            f"{pb_path!r} is truncated or corrupt ({len(data)} bytes): {e}"
        ) from e
    tags = [list(mg.meta_info_def.tags) for mg in proto.meta_graphs]
    serve = [mg for mg in proto.meta_graphs if SERVE_TAG in mg.meta_info_def.tags]
    if not serve:
        raise SavedModelError(
            f"No meta graph tagged {SERVE_TAG!r} in {os.fspath(path)!r} (tags {tags}): "
            "truncated, corrupt or not exported for serving."
        )

    def tensors(infos: Any) -> dict[str, Any]:
        return {
            key: {
                "dtype": tf.as_dtype(info.dtype).name,
                "shape": None
                if info.tensor_shape.unknown_rank
                else [d.size if d.size >= 0 else None for d in info.tensor_shape.dim],
                "tensor": info.name,
            }
            for key, info in infos.items()
        }

    signatures = {
        name: {
            "method": sig.method_name,
            "inputs": tensors(sig.inputs),
            "outputs": tensors(sig.outputs),
        }
        for name, sig in serve[0].signature_def.items()
        if not name.startswith("__")  # __saved_model_init_op is not a signature
    }
    return {"tags": tags, "signatures": signatures}


def _check_variables(path: str) -> None:
    """The variables' index is readable and every data shard it needs exists."""
    import tensorflow as tf

    var_dir = os.path.join(path, "variables")
    index = os.path.join(var_dir, "variables.index")
    if not os.path.isdir(var_dir):
        return  # a SavedModel without variables (constants only)
    if not os.path.isfile(index):
        raise SavedModelError(f"{path!r}: variables/variables.index is missing.")
    try:
        tf.train.load_checkpoint(os.path.join(var_dir, "variables"))
    except Exception as e:  # TF raises DataLossError/NotFoundError/...
        raise SavedModelError(f"{path!r}: variables are unreadable or truncated: {e}") from e


def _spec_from_signature(path: str, signature: str) -> dict[str, tf.TensorSpec]:
    import tensorflow as tf

    sigs = saved_model_signatures(path)["signatures"]
    if signature not in sigs:
        raise SavedModelError(f"{path!r} has no signature {signature!r}; it has {sorted(sigs)}.")
    return {
        k: tf.TensorSpec(v["shape"], tf.as_dtype(v["dtype"]), name=k)
        for k, v in sigs[signature]["inputs"].items()
    }


def _spec_from_path(path: str, signature: str = SIGNATURE_NAME) -> dict[str, tf.TensorSpec]:
    import tensorflow as tf

    actual = _spec_from_signature(path, signature)
    _check_variables(path)
    meta_path = os.path.join(path, "assets.extra", METADATA_FILE)
    if not os.path.exists(meta_path):
        return actual  # not exported by mtl_keras: the signature alone
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        described = {
            i["name"]: tf.TensorSpec(i["shape"], tf.as_dtype(i["dtype"]), name=i["name"])
            for i in meta["inputs"]
        }
        # A fusion model's without_<modalities> signatures take a subset.
        subset = meta.get("modality_signatures", {}).get(signature)
        if subset is not None:
            described = {n: described[n] for n in subset["inputs"]}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SavedModelError(f"{meta_path!r} is unreadable or malformed: {e}") from e
    if set(described) != set(actual):
        raise SavedModelError(
            f"{meta_path!r} lists inputs {sorted(described)} but the {signature!r} "
            f"signature in saved_model.pb takes {sorted(actual)}."
        )
    for name, spec in actual.items():
        meta_spec = described[name]
        if spec.dtype != meta_spec.dtype or spec.shape.as_list() != meta_spec.shape.as_list():
            raise SavedModelError(
                f"Feature {name!r}: {meta_path!r} says {meta_spec.dtype.name} "
                f"{meta_spec.shape.as_list()} but saved_model.pb's signature says "
                f"{spec.dtype.name} {spec.shape.as_list()}."
            )
    # Same content; keep the signature's order from the metadata (call order).
    return {name: actual[name] for name in described}


def _spec_from_model(model: keras.Model, signature: str) -> dict[str, tf.TensorSpec]:
    spec = input_signature(model)
    if signature == SIGNATURE_NAME:
        return spec
    for layer in model.layers:
        subset = getattr(layer, "serving_metadata", lambda: {})().get("modality_signatures", {})
        if signature in subset:
            return {n: spec[n] for n in subset[signature]["inputs"]}
    raise ValueError(
        f"Model {model.name!r} has no signature {signature!r} with its own inputs (task "
        f"subset signatures take the {SIGNATURE_NAME!r} inputs)."
    )


def signature_spec(source: Any, signature: str = SIGNATURE_NAME) -> dict[str, tf.TensorSpec]:
    """The signature inputs (name -> `tf.TensorSpec`) from several sources.

    Args:
        source: a functional `keras.Model`; an exported version directory
            (the signature read from `saved_model.pb`, cross-checked against
            `assets.extra/mtl_keras.json`; raises `SavedModelError` on a
            mismatch or a truncated/corrupt export); a dict name ->
            `tf.TensorSpec`; or the metadata's `"inputs"` list.
        signature: which signature (a model or a directory only): the
            default `serving_default`, or a fusion model's
            `without_<modalities>` signature (its present modalities' inputs).

    Example:
    >>> spec = signature_spec([{"name": "x", "dtype": "float32", "shape": [None, 4]}])
    >>> spec["x"].shape.as_list()
    [None, 4]
    """
    import keras
    import tensorflow as tf

    if isinstance(source, keras.Model):
        return _spec_from_model(source, signature)
    if isinstance(source, (str, os.PathLike)):
        return _spec_from_path(os.fspath(source), signature)
    if signature != SIGNATURE_NAME:
        raise ValueError(
            f"signature={signature!r} needs a model or an export directory as `source`."
        )
    if isinstance(source, Mapping):
        return {
            k: v if isinstance(v, tf.TensorSpec) else tf.TensorSpec(**v) for k, v in source.items()
        }
    return {
        i["name"]: tf.TensorSpec(i["shape"], tf.as_dtype(i["dtype"]), name=i["name"])
        for i in source
    }
