"""Every public layer passes the shared layer checks (issue #12).

`CASES` has one entry per name in `mtl_keras.layers.__all__`: constructor
arguments, small example inputs (fixed seed) and the documented exceptions.
`VARIANTS` adds other configurations of some layers. The checks live in
`tests/_support/layers.py` (`run_layer_checks`): registration and a JSON
config holding every constructor argument, `from_config` with the same
weights, output shapes and dtypes against `compute_output_shape` /
`compute_output_spec` and the symbolic call, a `.keras` round trip of a
functional model, deterministic `training=False`, one gradient step, XLA,
and output dtypes under the mixed_float16 / mixed_bfloat16 policies.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest
from _support.layers import LayerCase, run_layer_checks

from mtl_keras import layers as L

B = 4  # batch size of every example


def _normal(*shape: int) -> Callable[[np.random.Generator], np.ndarray]:
    return lambda rng: rng.normal(size=(B, *shape)).astype("float32")


def _tokens_and_mask(rng: np.random.Generator) -> list[np.ndarray]:
    tokens = rng.normal(size=(B, 3, 5)).astype("float32")
    mask = np.array([[1, 1, 1], [1, 0, 1], [0, 1, 0], [1, 1, 0]], "float32")
    return [tokens * mask[..., None], mask]


def _tabular(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "city": np.array(["a", "b", "zz", "a"]),  # "zz": out of vocabulary
        "device": np.array([3, 7, 3, 9], "int64"),
        "age": rng.normal(40, 10, size=B).astype("float32"),
        # Above float16's 65504: must not be autocast under mixed_float16.
        "income": np.array([0.0, 3.1e4, 8.1e4, 2.5e5], "float32"),
    }


CASES: dict[str, LayerCase] = {
    "MLP": LayerCase(
        L.MLP,
        {"units": (8, 4), "dropout": 0.5, "batch_norm": True, "l2": 1e-3},
        _normal(3),
        training=True,
        no_gradient={
            "dense_0/bias": "batch norm right after removes any shift of the batch",
            "dense_1/bias": "batch norm right after removes any shift of the batch",
        },
    ),
    "CrossStitch": LayerCase(
        L.CrossStitch, {"self_weight": 0.8}, lambda rng: [_normal(2, 3)(rng), _normal(2, 3)(rng)]
    ),
    "ExpertMixture": LayerCase(
        L.ExpertMixture,
        {},
        lambda rng: [
            rng.normal(size=(B, 3, 5)).astype("float32"),
            rng.dirichlet(np.ones(3), size=B).astype("float32"),
        ],
    ),
    "Experts": LayerCase(
        L.Experts,
        {"num_experts": 3, "units": (6, 4), "dropout": 0.3},
        _normal(5),
        training=True,
    ),
    "FusionWeights": LayerCase(
        L.FusionWeights, {"mode": "attention", "units": 4, "task": "price"}, _tokens_and_mask
    ),
    "Gate": LayerCase(L.Gate, {"num_experts": 3, "units": (4,), "task": "click"}, _normal(5)),
    "ModalityConcat": LayerCase(L.ModalityConcat, {}, _tokens_and_mask),
    "ModalityMask": LayerCase(
        L.ModalityMask,
        {},
        lambda rng: [np.array([1, 0, 1, 1], "int32"), np.array([[1], [1], [0], [1]], "int32")],
    ),
    "ModalityStack": LayerCase(
        L.ModalityStack,
        {"modalities": ["image", "text"], "modality_inputs": {"image": ["pixels"]}},
        lambda rng: [
            _normal(3)(rng),
            _normal(3)(rng),
            np.array([[1, 1], [1, 0], [0, 1], [0, 0]], "float32"),
        ],
    ),
    "ModalityTowers": LayerCase(
        L.ModalityTowers,
        {"num_modalities": 3, "units": [6, 2], "dropout": 0.5},
        _normal(3, 5),
        training=True,
    ),
    "PeriodicEmbedding": LayerCase(
        L.PeriodicEmbedding,
        {"num_features": 2, "num_frequencies": 3, "embedding_dim": 4},
        _normal(2),
    ),
    "PiecewiseLinearEncoding": LayerCase(
        L.PiecewiseLinearEncoding,
        {"bin_edges": [[-1.0, 0.0, 1.0], [-2.0, 2.0]], "bin_embedding_dim": 2},
        _normal(2),
    ),
    "RepresentationTap": LayerCase(L.RepresentationTap, {}, _normal(3)),
    "SequencePooling": LayerCase(
        L.SequencePooling,
        {"mode": "max"},
        lambda rng: [
            rng.normal(size=(B, 5, 3)).astype("float32"),
            np.array([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0], [1] * 5], "int32"),
        ],
    ),
    "TabularEncoder": LayerCase(
        L.TabularEncoder,
        {
            "vocabularies": {"city": ["a", "b", "c"], "device": [3, 7]},
            "numeric_stats": {"age": [40.0, 10.0], "income": [10.0, 1.0]},
            "log_features": ["income"],
            "embedding_dim": 3,
            "numeric_encoding": "periodic",
            "periodic": {"num_frequencies": 2, "embedding_dim": 2},
        },
        _tabular,
        # (The numeric-only TabularEncoder-piecewise variant does run under XLA.)
        not_xla="tf.string inputs cannot enter an XLA cluster (no XLA_CPU_JIT _Arg kernel "
        "for DT_STRING) and StringLookup / IntegerLookup use hash tables without XLA kernels",
    ),
    "TaskAttention": LayerCase(L.TaskAttention, {"channels": 4}, _normal(3, 6), training=True),
    "TrunkUnit": LayerCase(
        L.TrunkUnit,
        {"kind": "conv1d", "filters": 4, "kernel_size": 3},
        _normal(5, 3),
        training=True,
    ),
}

# More configurations of some layers (other modes, kinds, input forms), run
# through the same checks. They are not needed for coverage.
VARIANTS: dict[str, LayerCase] = {
    "MLP-identity": LayerCase(L.MLP, {"units": ()}, _normal(3)),
    "MLP-frozen": LayerCase(L.MLP, {"units": (4,), "trainable": False}, _normal(3)),
    "Experts-batch_norm": LayerCase(
        L.Experts,
        {"num_experts": 2, "units": (3,), "batch_norm": True},
        _normal(5),
        training=True,
        no_gradient={"dense_0/bias": "batch norm right after removes any shift of the batch"},
    ),
    "FusionWeights-static": LayerCase(
        L.FusionWeights,
        {"mode": "static", "num_modalities": 3, "modalities": ["a", "b", "c"]},
        _tokens_and_mask,
    ),
    "Gate-linear": LayerCase(L.Gate, {"num_experts": 2, "level": 1}, _normal(5)),
    "CrossStitch-one": LayerCase(L.CrossStitch, {}, lambda rng: [_normal(3)(rng)]),
    "PiecewiseLinearEncoding-plain": LayerCase(
        L.PiecewiseLinearEncoding, {"bin_edges": [[-1.0, 0.0, 1.0], [-2.0, 2.0]]}, _normal(2)
    ),
    "SequencePooling-avg-tuple": LayerCase(
        L.SequencePooling,
        {"mode": "avg"},
        lambda rng: (rng.normal(size=(B, 5, 3)).astype("float32"), np.tril(np.ones((B, 5)))),
    ),
    "SequencePooling-cls": LayerCase(L.SequencePooling, {"mode": "cls"}, _normal(5, 3)),
    "SequencePooling-image": LayerCase(L.SequencePooling, {"mode": "max"}, _normal(2, 2, 3)),
    "TabularEncoder-piecewise": LayerCase(
        L.TabularEncoder,
        {
            "numeric_stats": {"x": [0.0, 1.0]},
            "numeric_encoding": "piecewise_linear",
            "bin_edges": {"x": [-1.0, 0.0, 1.0]},
            "bin_embedding_dim": 2,
        },
        lambda rng: {"x": rng.normal(size=B).astype("float32")},
    ),
    "TaskAttention-no-batch_norm": LayerCase(
        L.TaskAttention, {"channels": 3, "batch_norm": False}, _normal(4, 4, 5)
    ),
    "TrunkUnit-conv2d": LayerCase(
        L.TrunkUnit, {"kind": "conv2d", "filters": 4}, _normal(4, 4, 2), training=True
    ),
    "TrunkUnit-bilstm": LayerCase(L.TrunkUnit, {"kind": "bilstm", "filters": 4}, _normal(5, 3)),
}

SLOW: set[str] = set()  # ids whose case takes over ~2 s on the 2-core machine


def _params(cases: dict[str, LayerCase]) -> list:
    return [
        pytest.param(name, id=name, marks=[pytest.mark.slow] if name in SLOW else [])
        for name in cases
    ]


def test_table_covers_every_public_layer():
    missing = sorted(set(L.__all__) - set(CASES))
    extra = sorted(set(CASES) - set(L.__all__))
    assert not missing, (
        f"public layers without an entry in CASES of {__file__}: {missing}; "
        "add one (constructor kwargs and example inputs) so the layer is checked."
    )
    assert not extra, f"CASES names layers that are not in mtl_keras.layers.__all__: {extra}"
    for name, case in CASES.items():
        assert case.cls is getattr(L, name), f"CASES[{name!r}] builds {case.cls.__name__}"


@pytest.mark.parametrize("name", _params(CASES))
def test_layer(name, tmp_path):
    run_layer_checks(CASES[name], tmp_path)


@pytest.mark.parametrize("name", _params(VARIANTS))
def test_layer_variant(name, tmp_path):
    run_layer_checks(VARIANTS[name], tmp_path)
