"""Task weighting strategies and gradient aggregators.

Pick one by name (`compile(weighting="uncertainty")`) or pass an instance
with parameters (`compile(weighting=Uncertainty(init_log_var=0.5))`).
"""

from __future__ import annotations

from typing import Any

import keras

from mtl_keras.weighting.base import (
    GradientAggregator,
    LossWeighting,
    StepContext,
    Weighting,
)
from mtl_keras.weighting.dwa import DWA
from mtl_keras.weighting.famo import FAMO
from mtl_keras.weighting.geometric_mean import GeometricMean
from mtl_keras.weighting.gradnorm import GradNorm
from mtl_keras.weighting.imtl_l import IMTLL
from mtl_keras.weighting.rlw import RLW
from mtl_keras.weighting.static import Static
from mtl_keras.weighting.uncertainty import Uncertainty

#: strategies selectable by name in `MultiTaskModel.compile(weighting=...)`
STRATEGIES: dict[str, type[Weighting]] = {
    "static": Static,
    "uncertainty": Uncertainty,
    "dwa": DWA,
    "rlw": RLW,
    "famo": FAMO,
    "gradnorm": GradNorm,
    "imtl_l": IMTLL,
    "geometric_mean": GeometricMean,
}


def get(identifier: Any) -> Weighting:
    """Returns a fresh strategy from a name, a config dict or an instance."""
    if identifier is None:
        return Static()
    if isinstance(identifier, Weighting):
        return identifier
    if isinstance(identifier, str):
        key = identifier.lower().replace("-", "_")
        if key not in STRATEGIES:
            raise ValueError(
                f"Unknown weighting {identifier!r}; expected one of {sorted(STRATEGIES)} "
                "or a mtl_keras.weighting.Weighting instance."
            )
        return STRATEGIES[key]()
    if isinstance(identifier, dict):
        obj = keras.saving.deserialize_keras_object(identifier)
        if isinstance(obj, Weighting):
            return obj
    raise ValueError(
        f"Expected a weighting name, config or Weighting instance, got {identifier!r}."
    )


__all__ = [
    "DWA",
    "FAMO",
    "IMTLL",
    "RLW",
    "STRATEGIES",
    "GeometricMean",
    "GradNorm",
    "GradientAggregator",
    "LossWeighting",
    "Static",
    "StepContext",
    "Uncertainty",
    "Weighting",
    "get",
]
