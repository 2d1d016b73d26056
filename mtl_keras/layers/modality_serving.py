"""Server-side serving of requests that omit whole modalities (`builders.fusion`).

(Public as `mtl_keras.builders.fusion_serving`; here, below `ModalityStack`,
so that the layer can describe and build its signatures without an import
cycle.)

A SavedModel signature has no optional inputs: TF Serving rejects a request
that lacks one of them. So an export of a fusion model carries, next to
`serving_default` (every input, masks included), one more signature per
allowed set of absent modalities, e.g. `without_image` or
`without_image_text`. Such a signature takes only the present modalities'
inputs (no masks); inside it, the absent modalities get placeholder inputs
(zeros, or "" for strings) and mask 0, the present ones mask 1. Its result is
exactly `serving_default` with the absent modalities' masks set to 0, which
the fusion model treats as "fused over the present modalities only".

The export metadata (`assets.extra/mtl_keras.json`) lists them under
`"modality_signatures"` (name -> absent modalities and input names), and
`mtl_keras.export.signature_spec(path, signature)` reads and cross-checks
their inputs.
"""

from __future__ import annotations

import itertools
from typing import Any, Sequence

import keras

__all__ = [
    "MAX_SUBSET_MODALITIES",
    "mask_input_name",
    "modality_signature_name",
    "modality_signatures",
    "serving_endpoints",
    "split_request",
]


def mask_input_name(modality: str) -> str:
    """Name of the model input saying whether `modality` is present (1) or not (0).

    Example:
    >>> mask_input_name("image")
    'image_mask'
    """
    return f"{modality}_mask"


# Up to this many modalities every non-empty set of absent modalities that
# leaves one present gets a signature (2**M - 2 of them: 6 for 3, 14 for 4);
# above it, only one modality absent at a time (M signatures), so that the
# export does not trace the model hundreds of times.
MAX_SUBSET_MODALITIES = 4


def modality_signature_name(absent: Sequence[str]) -> str:
    """The signature serving requests without the modalities `absent`.

    Example:
    >>> modality_signature_name(["image", "text"])
    'without_image_text'
    """
    if not absent:
        raise ValueError("`absent` must name at least one modality.")
    return "without_" + "_".join(absent)


def _absent_sets(modalities: Sequence[str]) -> list[tuple[str, ...]]:
    sizes = range(1, len(modalities)) if len(modalities) <= MAX_SUBSET_MODALITIES else [1]
    return [c for k in sizes for c in itertools.combinations(modalities, k)]


def modality_signatures(
    modalities: Sequence[str], modality_inputs: dict[str, Sequence[str]]
) -> dict[str, dict[str, list[str]]]:
    """Signature name -> `{"absent": [...], "inputs": [...]}` (the inputs a
    request to it sends, in modality order).

    Args:
        modalities: the modality names, in token order.
        modality_inputs: modality -> its raw input names.

    Example:
    >>> sigs = modality_signatures(["image", "text", "tab"],
    ...                            {"image": ["image"], "text": ["text"], "tab": ["age", "city"]})
    >>> list(sigs)
    ['without_image', 'without_text', 'without_tab', 'without_image_text', 'without_image_tab', 'without_text_tab']
    >>> sigs["without_image_text"]
    {'absent': ['image', 'text'], 'inputs': ['age', 'city']}
    """
    out = {}
    for absent in _absent_sets(list(modalities)):
        present = [m for m in modalities if m not in absent]
        out[modality_signature_name(absent)] = {
            "absent": list(absent),
            "inputs": [n for m in present for n in modality_inputs.get(m, [])],
        }
    return out


def serving_endpoints(
    model: keras.Model, modalities: Sequence[str], modality_inputs: dict[str, Sequence[str]]
) -> dict[str, tuple[Any, list[Any]]]:
    """Signature name -> (serving function, input `tf.TensorSpec`s) of every
    `without_<modalities>` signature of a fusion model (see the module doc).

    The function takes the present modalities' inputs as flat positional
    arguments (in the order of the specs) and returns `{task: output}`.
    `ModalityStack.serving_endpoints(model)` calls it with its modalities.

    Args:
        model: a `builders.fusion` model.
        modalities: its modality names, in token order.
        modality_inputs: modality -> its raw input names.

    Example:
    >>> import keras
    >>> import tensorflow as tf
    >>> from mtl_keras import Binary, builders
    >>> from mtl_keras.builders.fusion import Modality
    >>> model = builders.fusion(
    ...     [Modality("a", keras.Input((3,), name="a")),
    ...      Modality("b", keras.Input((2,), name="b"))],
    ...     [Binary("click")], fusion_dim=4, trunk_units=())
    >>> ends = serving_endpoints(model, ["a", "b"], {"a": ["a"], "b": ["b"]})
    >>> fn, specs = ends["without_b"]
    >>> [s.name for s in specs], fn(tf.ones((5, 3)))["click"].shape
    (['a'], TensorShape([5, 1]))
    """
    import tensorflow as tf

    from mtl_keras.export.signature import input_specs

    modalities = list(modalities)
    specs = {s.name: s for s in input_specs(model)}
    inputs_of = {m: list(modality_inputs.get(m, [])) for m in modalities}
    # Every non-mask input must belong to a modality, or the signature could
    # not know what to feed it.
    masks = {mask_input_name(m) for m in modalities}
    orphans = set(specs) - masks - {n for names in inputs_of.values() for n in names}
    if orphans:
        raise ValueError(
            f"Model {model.name!r}: inputs {sorted(orphans)} belong to no modality; "
            "cannot build the without_<modality> serving signatures."
        )
    endpoints = {}
    for name, info in modality_signatures(modalities, inputs_of).items():
        present = info["inputs"]
        absent = info["absent"]
        endpoints[name] = (
            _endpoint(model, modalities, inputs_of, specs, present, absent, tf),
            [specs[n] for n in present],
        )
    return endpoints


def _endpoint(
    model: keras.Model,
    modalities: list[str],
    inputs_of: dict[str, list[str]],
    specs: dict[str, Any],
    present: list[str],
    absent: list[str],
    tf: Any,
) -> Any:
    def serve(*args: Any) -> dict[str, Any]:
        given = dict(zip(present, args))
        batch = tf.shape(args[0])[0]
        full = dict(given)
        for modality in modalities:
            missing = modality in absent
            for n in inputs_of[modality] if missing else []:
                spec = specs[n]
                # An unknown length (e.g. variable-length token ids) gets 1.
                dims = [d if d is not None else 1 for d in spec.shape.as_list()[1:]]
                shape = tf.concat([tf.reshape(batch, [1]), tf.constant(dims, tf.int32)], 0)
                fill = tf.constant("") if spec.dtype == tf.string else tf.zeros([], spec.dtype)
                full[n] = tf.fill(shape, fill)
            value = 0.0 if missing else 1.0
            full[mask_input_name(modality)] = tf.fill(tf.reshape(batch, [1]), value)
        return dict(model({k: full[k] for k in model.input}, training=False))

    return serve


def split_request(
    features: dict[str, Any], metadata: dict[str, Any], signature: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """For a `without_<modalities>` signature: (what a request to it sends,
    the equivalent `serving_default` request).

    The first keeps only the present modalities' inputs; the second is all
    of `features` with the absent modalities' masks 0 and the present ones' 1
    (what the signature computes). Used by `export.check_export`.

    Args:
        features: a full `serving_default` request (dict name -> array).
        metadata: the export's `mtl_keras.json` (with `modalities` and
            `modality_signatures`).
        signature: a `without_<modalities>` signature name.

    Example:
    >>> import numpy as np
    >>> meta = {"modalities": {"a": {"inputs": ["a"], "mask": "a_mask"},
    ...                        "b": {"inputs": ["b"], "mask": "b_mask"}},
    ...         "modality_signatures": {"without_b": {"absent": ["b"], "inputs": ["a"]}}}
    >>> x = {"a": np.ones(2), "b": np.ones(2), "a_mask": np.zeros(2), "b_mask": np.ones(2)}
    >>> sent, full = split_request(x, meta, "without_b")
    >>> sorted(sent), full["a_mask"].tolist(), full["b_mask"].tolist()
    (['a'], [1.0, 1.0], [0.0, 0.0])
    """
    import numpy as np

    info = metadata["modality_signatures"][signature]
    sent = {n: features[n] for n in info["inputs"]}
    batch = len(next(iter(features.values())))
    full = dict(features)
    for modality, spec in metadata["modalities"].items():
        value = 0.0 if modality in info["absent"] else 1.0
        full[spec["mask"]] = np.full((batch,), value, "float32")
    return sent, full
