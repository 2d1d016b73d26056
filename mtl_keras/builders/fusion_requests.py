"""Completing serving requests that omit whole modalities (`builders.fusion` models)."""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import keras
import numpy as np

from mtl_keras.layers.modality_stack import ModalityStack


def _serving_info(source: Any) -> tuple[dict[str, Any], dict[str, tuple[str, list]]]:
    """(modalities metadata, input name -> (dtype, shape without batch))."""
    if isinstance(source, keras.Model):
        stack = next((la for la in source.layers if isinstance(la, ModalityStack)), None)
        if stack is None:
            raise ValueError(f"Model {source.name!r} is not a builders.fusion model.")
        struct = source.input
        specs = {k: (t.dtype, list(t.shape[1:])) for k, t in struct.items()}
        return stack.serving_metadata()["modalities"], specs
    if isinstance(source, (str, os.PathLike)):
        path = os.path.join(os.fspath(source), "assets.extra", "mtl_keras.json")
        with open(path, encoding="utf-8") as f:
            source = json.load(f)
    if not isinstance(source, Mapping) or "modalities" not in source:
        raise ValueError(
            "`source` must be a builders.fusion model, an export directory of one, or its "
            "mtl_keras.json metadata (with a 'modalities' entry)."
        )
    specs = {s["name"]: (s["dtype"], list(s["shape"][1:])) for s in source["inputs"]}
    return source["modalities"], specs


def complete_request(features: Mapping[str, Any], source: Any) -> dict[str, np.ndarray]:
    """Fills in a request that omits whole modalities.

    Every modality whose inputs are all absent from `features` gets
    placeholder inputs (zeros, or "" for strings) and mask 0; a modality
    whose inputs are all there gets mask 1 unless `features` sets its mask
    (a per-row mask marks individual rows as missing). The result is what
    the SavedModel signature (`serving_default`) takes, e.g. for
    `mtl_keras.serving.rest_payload`.

    Args:
        features: dict input name -> array with a batch dimension.
        source: the `builders.fusion` model, its export directory
            (`export_saved_model`'s return value, read from
            `assets.extra/mtl_keras.json`) or that metadata as a dict.

    Returns:
        dict input name -> array, every signature input present.

    Raises:
        ValueError naming the modality when only some of its inputs are
        given, or naming unknown inputs.

    Example:
    >>> from mtl_keras import Binary, builders
    >>> from mtl_keras.builders.fusion import Modality
    >>> model = builders.fusion(
    ...     [Modality("image", keras.Input((2, 2, 1), name="image")),
    ...      Modality("age", keras.Input((1,), name="age"))],
    ...     [Binary("click")], fusion_dim=4, trunk_units=())
    >>> req = complete_request({"age": np.ones((3, 1))}, model)
    >>> req["image"].shape, req["image_mask"].tolist(), req["age_mask"].tolist()
    ((3, 2, 2, 1), [0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    """
    modalities, specs = _serving_info(source)
    features = {k: np.asarray(v) for k, v in features.items()}
    unknown = sorted(set(features) - set(specs))
    if unknown:
        raise ValueError(f"Unknown input(s) {unknown}; the model's inputs are {sorted(specs)}.")
    if not features:
        raise ValueError("The request has no inputs at all; at least one modality is needed.")
    batch = len(next(iter(features.values())))
    out = dict(features)
    for modality, info in modalities.items():
        inputs, mask = info["inputs"], info["mask"]
        given = [n for n in inputs if n in features]
        if given and len(given) != len(inputs):
            missing = [n for n in inputs if n not in features]
            raise ValueError(
                f"Modality {modality!r}: inputs {missing} are missing while {given} are given; "
                "send all of its inputs or none (to mark it missing)."
            )
        if not given:
            for n in inputs:
                dtype, shape = specs[n]
                dtype = str(dtype)
                if dtype == "string":
                    out[n] = np.full((batch, *shape), "", dtype=object)
                else:
                    out[n] = np.zeros((batch, *shape), dtype=dtype)
            out[mask] = np.zeros((batch,), "float32")
        elif mask not in features:
            out[mask] = np.ones((batch,), "float32")
    return out
