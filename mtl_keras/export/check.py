"""Self-check of an export, loading it the way TF Serving does.

TF Serving does not run Python: it reads `saved_model.pb`, picks the meta
graph tagged `serve`, restores the variables and runs the signature's tensors
by name in a TF1-style session. `check_export` does the same with
`tf.compat.v1.saved_model.loader.load`, and also through the TF2 loader, and
compares both with the Keras model's predictions.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import numpy as np
import tensorflow as tf

from mtl_keras.export.requests import validate_request
from mtl_keras.export.signature import (
    METADATA_FILE,
    SERVE_TAG,
    SIGNATURE_NAME,
    SavedModelError,
    input_signature,
    saved_model_signatures,
)


class ExportCheckError(AssertionError):
    """The exported model does not behave like the Keras model."""


def inspect_saved_model(path: str | os.PathLike[str]) -> dict[str, Any]:
    """`saved_model_cli show --all` as a dict, read from `saved_model.pb`.

    Args:
        path: a SavedModel (version) directory.

    Returns:
        `{"tags": [[...] per meta graph], "signatures": {name: {"inputs":
        {key: {"dtype", "shape", "tensor"}}, "outputs": {...}, "method"}}}`
        for the `serve` meta graph.

    Raises:
        ExportCheckError: missing, truncated or corrupt `saved_model.pb`, or
            no `serve` meta graph.

    Example:
    >>> import tempfile
    >>> from mtl_keras import Binary, Regression, builders
    >>> model = builders.shared_bottom(
    ...     keras.Input((4,), name="x"), [Binary("click"), Regression("dwell")],
    ...     trunk_units=(8,), tower_units=())
    >>> from mtl_keras.export import export_saved_model
    >>> path = export_saved_model(model, tempfile.mkdtemp())
    >>> sorted(inspect_saved_model(path)["signatures"]["serving_default"]["outputs"])
    ['click', 'dwell']
    """
    try:
        return saved_model_signatures(path)
    except SavedModelError as e:
        raise ExportCheckError(str(e)) from e


def run_tf2(path: str, features: Mapping[str, np.ndarray], signature: str) -> dict[str, np.ndarray]:
    """Runs a signature through `tf.saved_model.load` (the TF2 loader)."""
    fn = tf.saved_model.load(os.fspath(path)).signatures[signature]
    out = fn(**{k: tf.constant(v) for k, v in features.items()})
    return {k: v.numpy() for k, v in out.items()}


def run_tf1(path: str, features: Mapping[str, np.ndarray], signature: str) -> dict[str, np.ndarray]:
    """Runs a signature like TF Serving: TF1 session loader, tensors by name."""
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as sess:
        # load() restores the variables and runs the init op (lookup tables).
        meta_graph = tf.compat.v1.saved_model.loader.load(sess, [SERVE_TAG], os.fspath(path))
        sig = meta_graph.signature_def[signature]
        missing = set(sig.inputs) - set(features)
        if missing:
            raise ExportCheckError(f"Signature {signature!r} needs inputs {sorted(missing)}.")
        feed = {sig.inputs[k].name: v for k, v in features.items()}
        fetches = {k: info.name for k, info in sig.outputs.items()}
        return sess.run(fetches, feed_dict=feed)


def check_export(
    path: str | os.PathLike[str],
    model: Any,
    examples: Mapping[str, Any],
    *,
    atol: float = 1e-5,
    signatures: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Checks that an exported version serves what the Keras model predicts.

    Checks: a meta graph tagged `serve`; every signature's inputs are the
    model's raw inputs (a fusion model's `without_<modalities>` signatures:
    the present modalities' inputs, compared with the model's predictions
    with the absent modalities masked out) and its outputs are task outputs;
    each signature run
    through the TF2 loader and through the TF1 session loader (TF Serving's
    way) matches `model.predict(examples)` within `atol`.

    Args:
        path: the version directory (`export_saved_model`'s return value).
        model: the Keras model, or a dict task -> expected predictions for
            `examples` (e.g. saved from the model in another process).
        examples: a few raw rows, dict feature -> array with a batch dim.
        atol: maximum absolute difference allowed per output.
        signatures: restrict to these signatures (default: all).

    Returns:
        `{"tags", "signatures" (as `inspect_saved_model`), "max_abs_diff":
        {"tf2"|"tf1": {signature: {task: float}}}, "skipped": [signatures
        not compared: modality signatures when `model` is a dict]}`.

    Raises:
        ExportCheckError (an AssertionError) describing the first mismatch.

    Example:
    >>> import tempfile
    >>> from mtl_keras import Binary, Regression, builders
    >>> model = builders.shared_bottom(
    ...     keras.Input((4,), name="x"), [Binary("click"), Regression("dwell")],
    ...     trunk_units=(8,), tower_units=())
    >>> from mtl_keras.export import export_saved_model
    >>> path = export_saved_model(model, tempfile.mkdtemp())
    >>> report = check_export(path, model, {"x": np.random.rand(8, 4).astype("float32")})
    >>> diff = report["max_abs_diff"]["tf1"]["serving_default"]
    >>> sorted(diff), max(diff.values()) < 1e-5
    (['click', 'dwell'], True)
    """
    path = os.fspath(path)
    info = inspect_saved_model(path)
    sigs = info["signatures"]
    if SIGNATURE_NAME not in sigs:
        raise ExportCheckError(f"No {SIGNATURE_NAME!r} signature; found {sorted(sigs)}.")
    input_spec = {
        k: tf.TensorSpec(v["shape"], tf.as_dtype(v["dtype"]))
        for k, v in sigs[SIGNATURE_NAME]["inputs"].items()
    }
    features = validate_request(input_spec, examples)
    if isinstance(model, Mapping):
        expected = {k: np.asarray(v) for k, v in model.items()}
    else:
        model_inputs = input_signature(model)
        if set(model_inputs) != set(input_spec):
            raise ExportCheckError(
                f"Signature inputs {sorted(input_spec)} differ from the model's "
                f"inputs {sorted(model_inputs)}."
            )
        expected = {
            k: np.asarray(v) for k, v in model.predict(_predict_inputs(features), verbose=0).items()
        }

    names = list(signatures) if signatures is not None else sorted(sigs)
    report: dict[str, Any] = {**info, "max_abs_diff": {"tf2": {}, "tf1": {}}, "skipped": []}
    metadata = _metadata(path)
    modality_sigs = metadata.get("modality_signatures", {})
    for sig in names:
        if sig not in sigs:
            raise ExportCheckError(f"No signature {sig!r}; found {sorted(sigs)}.")
        sig_features, sig_expected = features, expected
        if sig in modality_sigs:
            # A fusion model's without_<modalities> signature: only the
            # present modalities' inputs; serves like masks 0 for the absent.
            if set(sigs[sig]["inputs"]) != set(modality_sigs[sig]["inputs"]):
                raise ExportCheckError(
                    f"Signature {sig!r} takes {sorted(sigs[sig]['inputs'])}; the metadata "
                    f"says {sorted(modality_sigs[sig]['inputs'])}."
                )
            if isinstance(model, Mapping):
                report["skipped"].append(sig)  # no model to predict the masked rows
                continue
            from mtl_keras.layers.modality_serving import split_request

            sig_features, masked = split_request(features, metadata, sig)
            sig_expected = {
                k: np.asarray(v)
                for k, v in model.predict(_predict_inputs(masked), verbose=0).items()
            }
        elif set(sigs[sig]["inputs"]) != set(input_spec):
            raise ExportCheckError(f"Signature {sig!r} inputs differ from {SIGNATURE_NAME!r}.")
        unknown = set(sigs[sig]["outputs"]) - set(sig_expected)
        if unknown:
            raise ExportCheckError(f"Signature {sig!r} has non-task outputs {sorted(unknown)}.")
        for loader, run in (("tf2", run_tf2), ("tf1", run_tf1)):
            got = run(path, sig_features, sig)
            diffs = {}
            for task, value in got.items():
                if value.shape != sig_expected[task].shape:
                    raise ExportCheckError(
                        f"[{loader}] {sig}/{task}: shape {value.shape} != Keras "
                        f"{sig_expected[task].shape}."
                    )
                diffs[task] = float(np.max(np.abs(value - sig_expected[task]), initial=0.0))
                if not diffs[task] <= atol:
                    raise ExportCheckError(
                        f"[{loader}] {sig}/{task}: max |served - keras| = {diffs[task]:.3g} "
                        f"> atol {atol}."
                    )
            report["max_abs_diff"][loader][sig] = diffs
    return report


def _metadata(path: str) -> dict[str, Any]:
    """The export's `assets.extra/mtl_keras.json` ({} when absent)."""
    meta_path = os.path.join(path, "assets.extra", METADATA_FILE)
    if not os.path.exists(meta_path):
        return {}
    with open(meta_path, encoding="utf-8") as f:
        return json.load(f)


def _predict_inputs(features: Mapping[str, np.ndarray]) -> dict[str, Any]:
    # Keras cannot convert object arrays of bytes; a tf.string tensor it can.
    return {k: tf.constant(v) if v.dtype == object else v for k, v in features.items()}
