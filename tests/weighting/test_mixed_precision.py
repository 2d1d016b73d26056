"""Every strategy trains with finite losses under mixed precision (issue #3).

`mixed_float16` wraps the optimizer in a `LossScaleOptimizer` (the strategies
scale before differentiating and hand back scaled gradients); under
`mixed_bfloat16` there is no loss scaling. The global policy is restored.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from _support import toy_data

import mtl_keras as mk
from mtl_keras import weighting

NAMES = [*weighting.STRATEGIES, "upgrad@rep", "mgda@rep"]


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_every_strategy_trains_finite(policy: str) -> None:
    x, y = toy_data(96)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    bad = {}
    try:
        for name in NAMES:
            base, _, rep = name.partition("@")
            strategy = weighting.STRATEGIES[base](**({"rep_grad": True} if rep else {}))
            keras.utils.set_random_seed(0)
            model = mk.builders.shared_bottom(
                keras.Input((8,), name="x"),
                [mk.Binary("click"), mk.Regression("dwell")],
                trunk_units=(16,),
                tower_units=(8,),
            )
            model.compile(keras.optimizers.SGD(0.05), weighting=strategy)
            history = model.fit(x, y, batch_size=32, epochs=1, verbose=0).history
            if policy == "mixed_float16":
                assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
            values = [history[k][-1] for k in ("loss", "click_loss", "dwell_loss")]
            if not np.all(np.isfinite(values)):
                bad[name] = values
    finally:
        keras.config.set_dtype_policy(previous)
    assert not bad, bad
