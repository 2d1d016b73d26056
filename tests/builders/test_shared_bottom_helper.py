"""The shared builder checks on the reference builder (shared-bottom)."""

from __future__ import annotations

import keras
import pytest
from _support import toy_data
from _support.builders import run_builder_checks

import mtl_keras as mk


@pytest.mark.slow  # a demo of the helper; each new builder's test runs it too
def test_shared_bottom_passes_builder_checks(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = toy_data(128)
    model = mk.builders.shared_bottom(
        keras.Input((8,), name="x"),
        [mk.Binary("click"), mk.Regression("dwell")],
        trunk_units=(8,),
        tower_units=(4,),
    )
    out = run_builder_checks(model, x, y, tmp_path)
    assert sorted(out["predictions"]) == ["click", "dwell"]
