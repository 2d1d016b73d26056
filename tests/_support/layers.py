"""Shared checks a Keras layer of the library must pass (keras-hub's
`run_layer_test` in spirit, our own code).

Usage in a layer test::

    from _support.layers import LayerCase, run_layer_checks

    CASE = LayerCase(L.MLP, {"units": (8, 4)}, lambda rng: rng.normal(size=(4, 3)))

    def test_mlp(tmp_path):
        run_layer_checks(CASE, tmp_path)

Each `check_*` function can also be called alone on a built layer and its
example inputs (a nest of numpy arrays: one array, a list or a dict; string
arrays become `tf.string` tensors). Every check compares with
`assert_same_outputs` (structure and values).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path
from typing import Any, Callable, Mapping

import keras
import numpy as np
import tensorflow as tf

#: Tolerances: eager vs rebuilt / reloaded layers run the same kernels.
EXACT = {"rtol": 1e-6, "atol": 1e-6}
#: XLA may fuse and reorder float ops.
XLA = {"rtol": 1e-5, "atol": 1e-5}


@dataclasses.dataclass(frozen=True)
class LayerCase:
    """One layer under test.

    Args:
        cls: the layer class.
        kwargs: constructor arguments.
        make_inputs: `rng -> nest of numpy arrays` (small, batch first).
        training: the layer behaves differently with `training=True`
            (dropout, batch norm); its `call` takes `training`.
        no_gradient: substrings of `Variable.path` of trainable weights
            that should get no (or a numerically zero) gradient in the
            one-step check, each with its reason.
        not_xla: why the layer cannot run under `jit_compile=True` (None:
            it can and is checked).
        seed: seed of `make_inputs` and of the layer's initialisers.
    """

    cls: type
    kwargs: Mapping[str, Any]
    make_inputs: Callable[[np.random.Generator], Any]
    training: bool = False
    no_gradient: Mapping[str, str] = dataclasses.field(default_factory=dict)
    not_xla: str | None = None
    seed: int = 0

    def inputs(self) -> Any:
        return self.make_inputs(np.random.default_rng(self.seed))

    def build(self) -> tuple[keras.layers.Layer, Any]:
        """A fresh layer built by one eager call on the example inputs, and
        those inputs as tensors."""
        keras.utils.set_random_seed(self.seed)
        layer = self.cls(**self.kwargs)
        x = to_tensors(self.inputs())
        layer(x)
        return layer, x


# --------------------------------------------------------------------- nests
def to_tensors(inputs: Any) -> Any:
    """Numpy nest -> tensor nest (`tf.string` for str/bytes arrays)."""

    def convert(a: Any) -> Any:
        a = np.asarray(a)
        if a.dtype.kind in "USO":
            return tf.constant(a.astype(str))
        return keras.ops.convert_to_tensor(a)

    return keras.tree.map_structure(convert, inputs)


def symbolic_inputs(inputs: Any) -> Any:
    """One `keras.Input` (batch dimension None) per tensor of the nest; the
    inputs of a dict are named after their keys."""

    def make(a: Any, name: str | None = None) -> Any:
        dtype = "string" if a.dtype == tf.string else keras.backend.standardize_dtype(a.dtype)
        return keras.Input(shape=tuple(a.shape[1:]), dtype=dtype, name=name)

    if isinstance(inputs, Mapping):
        return {k: make(v, k) for k, v in inputs.items()}
    return keras.tree.map_structure(make, inputs)


def _numpy(x: Any) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x))


def assert_same_outputs(actual: Any, expected: Any, rtol: float = 1e-6, atol: float = 1e-6) -> None:
    """Same nest structure, same shapes, values within the tolerances."""
    keras.tree.assert_same_structure(actual, expected)
    for a, e in zip(keras.tree.flatten(actual), keras.tree.flatten(expected)):
        a, e = _numpy(a), _numpy(e)
        assert a.shape == e.shape, f"shape {a.shape} != {e.shape}"
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)


def _call(layer: Any, x: Any, training: bool | None, takes_training: bool) -> Any:
    return layer(x, training=training) if takes_training else layer(x)


def _shapes(nest: Any) -> Any:
    return keras.tree.map_structure(lambda t: tuple(t.shape), nest)


def _shape_matches(expected: Any, actual: tuple) -> bool:
    """`expected` may leave dimensions unknown (None)."""
    expected = tuple(expected)
    return len(expected) == len(actual) and all(
        e is None or e == a for e, a in zip(expected, actual)
    )


def _flat_shapes(shapes: Any) -> list[tuple]:
    """A shape (tuple of ints / None) or a nest of them, flattened like `keras.tree`."""
    if isinstance(shapes, dict):
        return [s for k in sorted(shapes) for s in _flat_shapes(shapes[k])]
    if all(d is None or isinstance(d, int) for d in shapes):
        return [tuple(shapes)]
    return [s for inner in shapes for s in _flat_shapes(inner)]


def _overrides(layer: Any, method: str) -> bool:
    return getattr(type(layer), method) is not getattr(keras.layers.Layer, method)


# -------------------------------------------------------------------- checks
def check_registration(layer: keras.layers.Layer) -> None:
    """Registered with Keras serialisation; config JSON-serialisable and
    round-tripping through `serialize_keras_object`."""
    cls = type(layer)
    name = keras.saving.get_registered_name(cls)
    assert name == f"mtl_keras>{cls.__name__}", (
        f"{cls.__name__} is not registered (got {name!r}): decorate it with "
        "@keras.saving.register_keras_serializable(package='mtl_keras')."
    )
    assert keras.saving.get_registered_object(name) is cls
    config = layer.get_config()
    assert json.loads(json.dumps(config)) == config, "get_config() changes through JSON"
    restored = keras.saving.deserialize_keras_object(
        json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    )
    assert type(restored) is cls
    assert json.dumps(restored.get_config(), sort_keys=True) == json.dumps(config, sort_keys=True)


def check_config_complete(layer: keras.layers.Layer, kwargs: Mapping[str, Any]) -> None:
    """`get_config()` holds every named constructor argument, and the ones
    given in `kwargs` with their values (compared through JSON: tuples are
    lists). A missing argument would silently fall back to its default in
    `from_config`, which outputs in inference mode may not reveal (dropout)."""
    config = layer.get_config()
    params = inspect.signature(type(layer).__init__).parameters.values()
    named = [p.name for p in params if p.name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD]
    missing = [n for n in named if n not in config]
    assert not missing, f"{type(layer).__name__}.get_config() lacks constructor arguments {missing}"
    for key, value in kwargs.items():
        got = json.loads(json.dumps(config.get(key)))
        assert got == json.loads(json.dumps(value)), f"config[{key!r}] = {got!r}, given {value!r}"


def check_config_round_trip(layer: keras.layers.Layer, x: Any, takes_training: bool) -> None:
    """`from_config(get_config())` with the same weights gives the same outputs."""
    config = layer.get_config()
    rebuilt = type(layer).from_config(config)
    assert json.dumps(rebuilt.get_config(), sort_keys=True) == json.dumps(config, sort_keys=True)
    rebuilt(x)
    weights = layer.get_weights()
    assert [w.shape for w in rebuilt.get_weights()] == [w.shape for w in weights]
    rebuilt.set_weights(weights)
    assert_same_outputs(
        _call(rebuilt, x, False, takes_training), _call(layer, x, False, takes_training), **EXACT
    )


def check_output_spec(layer: keras.layers.Layer, x: Any, takes_training: bool) -> None:
    """Eager outputs match `compute_output_shape` (where defined) and
    `compute_output_spec` (shapes and dtypes), and the symbolic call."""
    out = _call(layer, x, False, takes_training)
    out_flat = keras.tree.flatten(out)
    if _overrides(layer, "compute_output_shape"):
        expected = _flat_shapes(layer.compute_output_shape(_shapes(x)))
        assert len(expected) == len(out_flat), f"{len(expected)} shapes for {len(out_flat)} outputs"
        for e, o in zip(expected, out_flat):
            assert _shape_matches(e, tuple(o.shape)), (
                f"compute_output_shape says {tuple(e)}, the call gives {tuple(o.shape)}"
            )
    symbolic = symbolic_inputs(x)
    spec = layer.compute_output_spec(symbolic)
    called = layer(symbolic)
    for what, nest in (("compute_output_spec", spec), ("symbolic call", called)):
        keras.tree.assert_same_structure(nest, out)
        for s, o in zip(keras.tree.flatten(nest), out_flat):
            eager_shape = tuple(o.shape)
            assert _shape_matches(s.shape, eager_shape), (
                f"{what} shape {s.shape} != eager shape {eager_shape}"
            )
            assert s.shape[1:] == eager_shape[1:], f"{what} leaves {s.shape} unknown"
            dtype = keras.backend.standardize_dtype(o.dtype)
            assert s.dtype == dtype, f"{what} dtype {s.dtype} != eager dtype {dtype}"


def check_saved_model(layer: keras.layers.Layer, x: Any, tmp_path: Path) -> None:
    """A functional model around the layer survives `.keras` save/load."""
    symbolic = symbolic_inputs(x)
    model = keras.Model(symbolic, layer(symbolic))
    expected = model(x, training=False)
    path = Path(tmp_path) / f"{layer.name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    reloaded_layer = loaded.get_layer(layer.name)
    assert type(reloaded_layer) is type(layer)
    assert_same_outputs(loaded(x, training=False), expected, **EXACT)


def check_inference_deterministic(layer: keras.layers.Layer, x: Any) -> None:
    """`training=False` gives the same outputs every call (and differs from
    `training=True`, which proves the training path is wired)."""
    first = layer(x, training=False)
    assert_same_outputs(layer(x, training=False), first, rtol=0, atol=0)
    trained = keras.tree.flatten(layer(x, training=True))
    assert any(
        not np.allclose(_numpy(t), _numpy(f)) for t, f in zip(trained, keras.tree.flatten(first))
    ), "training=True gives the inference outputs: the training behaviour is not wired"


def check_gradients(
    layer: keras.layers.Layer,
    x: Any,
    takes_training: bool,
    no_gradient: Mapping[str, str] | None = None,
) -> None:
    """One gradient step (training mode where the layer has one): every
    trainable weight gets a finite, not-all-zero gradient, except those named
    in `no_gradient` (which must get none or a numerically zero one).

    The loss is a sum of the outputs weighted by fixed random numbers: a plain
    sum is constant for softmax outputs (`Gate`, `FusionWeights`), whose
    gradient would be zero by construction.
    """
    no_gradient = no_gradient or {}
    weights = layer.trainable_weights
    if not weights:
        return
    with tf.GradientTape() as tape:
        out = keras.tree.flatten(_call(layer, x, True if takes_training else None, takes_training))
        rng = np.random.default_rng(1)
        loss = sum(
            tf.reduce_sum(tf.cast(o, "float32") * rng.uniform(0.5, 1.5, tuple(o.shape)))
            for o in out
        )
    grads = tape.gradient(loss, weights)
    exempt = [k for k in no_gradient if not any(k in w.path for w in weights)]
    assert not exempt, f"no_gradient names no weight: {exempt}"
    for w, g in zip(weights, grads):
        g = None if g is None else _numpy(tf.convert_to_tensor(g))
        if any(k in w.path for k in no_gradient):
            assert g is None or np.abs(g).max() < 1e-4, f"{w.path} gets a gradient {g}"
            continue
        assert g is not None, f"{w.path} gets no gradient"
        assert np.all(np.isfinite(g)), f"{w.path} has a non-finite gradient"
        assert np.any(g != 0), f"{w.path} has an all-zero gradient"


def check_xla(layer: keras.layers.Layer, x: Any, takes_training: bool) -> None:
    """Under `tf.function(jit_compile=True)` the outputs equal the eager ones."""
    eager = _call(layer, x, False, takes_training)
    compiled = tf.function(
        lambda inputs: _call(layer, inputs, False, takes_training), jit_compile=True
    )
    assert_same_outputs(compiled(x), eager, **XLA)


def check_dtype_policy(case: LayerCase, policy: str = "mixed_float16") -> None:
    """Under a global mixed-precision policy a fresh layer runs, gives finite
    outputs, and its eager output dtypes are the ones `compute_output_spec`
    and the symbolic call announce. The previous policy is restored."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        layer, x = case.build()
        check_output_spec(layer, x, case.training)
        for out in keras.tree.flatten(_call(layer, x, False, case.training)):
            assert np.all(np.isfinite(_numpy(keras.ops.cast(out, "float32")))), policy
    finally:
        keras.config.set_dtype_policy(previous)


def run_layer_checks(case: LayerCase, tmp_path: Path) -> None:
    """All the checks above on a fresh layer of `case`."""
    layer, x = case.build()
    check_registration(layer)
    check_config_complete(layer, case.kwargs)
    check_config_round_trip(layer, x, case.training)
    check_output_spec(layer, x, case.training)
    check_saved_model(layer, x, tmp_path)
    if case.training:
        check_inference_deterministic(layer, x)
    check_gradients(layer, x, case.training, case.no_gradient)
    if case.not_xla is None:
        check_xla(layer, x, case.training)
    for policy in ("mixed_float16", "mixed_bfloat16"):
        check_dtype_policy(case, policy)
