"""Task weighting strategies and gradient aggregators.

Pick one by name (`compile(weighting="uncertainty")`) or pass an instance
with parameters (`compile(weighting=Uncertainty(init_log_var=0.5))`).
"""

from __future__ import annotations

from typing import Any

import keras

from mtl_keras.weighting.aligned_mtl import AlignedMTL
from mtl_keras.weighting.base import (
    GradientAggregator,
    LossWeighting,
    StepContext,
    Weighting,
)
from mtl_keras.weighting.cagrad import CAGrad
from mtl_keras.weighting.config import ConFIG
from mtl_keras.weighting.dualproj import DualProj
from mtl_keras.weighting.dwa import DWA
from mtl_keras.weighting.famo import FAMO
from mtl_keras.weighting.geometric_mean import GeometricMean
from mtl_keras.weighting.graddrop import GradDrop
from mtl_keras.weighting.gradnorm import GradNorm
from mtl_keras.weighting.gradvac import GradVac
from mtl_keras.weighting.imtl_l import IMTLL
from mtl_keras.weighting.imtlg import IMTLG
from mtl_keras.weighting.jacobian import (
    ChainRuleJacobian,
    JacobianSource,
    ParameterJacobian,
    RepresentationJacobian,
)
from mtl_keras.weighting.mgda import MGDA
from mtl_keras.weighting.nash_mtl import NashMTL
from mtl_keras.weighting.pcgrad import PCGrad
from mtl_keras.weighting.rlw import RLW
from mtl_keras.weighting.static import Static
from mtl_keras.weighting.uncertainty import Uncertainty
from mtl_keras.weighting.upgrad import UPGrad

#: strategies selectable by name in `MultiTaskModel.compile(weighting=...)`
STRATEGIES: dict[str, type[Weighting]] = {
    "static": Static,
    "uncertainty": Uncertainty,
    # gradient aggregators (issue #3)
    "pcgrad": PCGrad,
    "mgda": MGDA,
    "cagrad": CAGrad,
    "nash_mtl": NashMTL,
    "imtl_g": IMTLG,
    "upgrad": UPGrad,
    "aligned_mtl": AlignedMTL,
    "graddrop": GradDrop,
    "gradvac": GradVac,
    "dualproj": DualProj,
    "config": ConFIG,
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
    "IMTLG",
    "IMTLL",
    "MGDA",
    "RLW",
    "STRATEGIES",
    "AlignedMTL",
    "CAGrad",
    "ChainRuleJacobian",
    "ConFIG",
    "DualProj",
    "GeometricMean",
    "GradDrop",
    "GradNorm",
    "GradVac",
    "GradientAggregator",
    "JacobianSource",
    "LossWeighting",
    "NashMTL",
    "PCGrad",
    "ParameterJacobian",
    "RepresentationJacobian",
    "Static",
    "StepContext",
    "UPGrad",
    "Uncertainty",
    "Weighting",
    "get",
]
