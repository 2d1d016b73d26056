"""Stacks per-modality embeddings into tokens, zeroing missing modalities."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import keras
from keras import ops

from mtl_keras.layers.modality_serving import (
    mask_input_name,  # re-exported: builders.fusion reads it from here
    modality_signatures,
    serving_endpoints,
)

__all__ = ["ModalityMask", "ModalityStack", "mask_input_name"]


@keras.saving.register_keras_serializable(package="mtl_keras")
class ModalityStack(keras.layers.Layer):
    """`[emb_1, ..., emb_M, mask]` -> tokens `(batch, M, width)`.

    Row `i`'s token `k` is `emb_k[i]` where `mask[i, k] > 0` (modality
    present) and exactly 0 where it is missing, whatever the encoder computed
    from the placeholder input (`where`, not a product, so even a non-finite
    placeholder cannot leak). Everything after this layer sees a missing
    modality only through the mask, which is what makes fusion "over the
    present modalities only".

    The layer also records which raw model inputs belong to each modality
    (`modality_inputs`), so that serving requests lacking a modality can be
    completed (`mtl_keras.builders.fusion.complete_request`) and exports can
    describe it (`serving_metadata`).

    Args:
        modalities: modality names, in token order.
        modality_inputs: dict modality -> names of its raw model inputs.

    Input: a list of `M` tensors `(batch, width)` and the mask
    `(batch, M)` (1 present, 0 missing). Output: `(batch, M, width)`.

    Example:
    >>> import numpy as np
    >>> stack = ModalityStack(["image", "text"])
    >>> a, b = np.ones((2, 3), "float32"), 2 * np.ones((2, 3), "float32")
    >>> mask = np.array([[1, 1], [1, 0]], "float32")
    >>> np.asarray(stack([a, b, mask]))[1].tolist()
    [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
    """

    def __init__(
        self,
        modalities: Sequence[str],
        modality_inputs: Mapping[str, Sequence[str]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.modalities = [str(m) for m in modalities]
        if not self.modalities or len(set(self.modalities)) != len(self.modalities):
            raise ValueError(
                f"ModalityStack: `modalities` must be distinct names, got {self.modalities}."
            )
        self.modality_inputs = {k: list(v) for k, v in (modality_inputs or {}).items()}
        unknown = set(self.modality_inputs) - set(self.modalities)
        if unknown:
            raise ValueError(
                f"ModalityStack: `modality_inputs` names unknown modalities {sorted(unknown)}."
            )

    def call(self, inputs: Sequence[Any]) -> Any:
        *embeddings, mask = inputs
        if len(embeddings) != len(self.modalities):
            raise ValueError(
                f"ModalityStack expects {len(self.modalities)} embeddings "
                f"({self.modalities}) and a mask, got {len(embeddings)} embeddings."
            )
        tokens = ops.stack(embeddings, axis=1)
        present = ops.expand_dims(ops.cast(mask, tokens.dtype) > 0, -1)
        return ops.where(present, tokens, ops.zeros_like(tokens))

    def compute_output_shape(self, input_shape: Any) -> Any:
        first = tuple(input_shape[0])
        return (first[0], len(self.modalities), first[-1])

    def serving_metadata(self) -> dict[str, Any]:
        """What an export records about the modalities (see `export_saved_model`):
        each modality's inputs and mask, and the `without_<modalities>`
        signatures serving requests that omit modalities."""
        inputs = {m: self.modality_inputs.get(m, []) for m in self.modalities}
        return {
            "modalities": {
                m: {"inputs": inputs[m], "mask": mask_input_name(m)} for m in self.modalities
            },
            "modality_signatures": modality_signatures(self.modalities, inputs),
        }

    def serving_endpoints(self, model: keras.Model) -> dict[str, Any]:
        """The `without_<modalities>` signatures of `model` for its export:
        name -> (function, input specs); see `builders.fusion_serving`."""
        return serving_endpoints(model, self.modalities, self.modality_inputs)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "modalities": self.modalities,
            "modality_inputs": self.modality_inputs,
        }


@keras.saving.register_keras_serializable(package="mtl_keras")
class ModalityMask(keras.layers.Layer):
    """Per-modality presence inputs `(batch,)` or `(batch, 1)` -> `(batch, M)` float32.

    Example:
    >>> import numpy as np
    >>> np.asarray(ModalityMask()([np.array([1, 0]), np.array([1, 1])])).tolist()
    [[1.0, 1.0], [0.0, 1.0]]
    """

    def call(self, masks: Sequence[Any]) -> Any:
        flat = [ops.reshape(ops.cast(m, "float32"), (-1,)) for m in masks]
        return ops.stack(flat, axis=1)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (tuple(input_shape[0])[0], len(input_shape))

    def compute_output_spec(self, masks: Any) -> Any:
        return keras.KerasTensor((masks[0].shape[0], len(masks)), dtype="float32")

    def get_config(self) -> dict[str, Any]:
        return super().get_config()
