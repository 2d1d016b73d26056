"""Shared representations made of several tensors (MMoE, PLE, cross-stitch,
split, backbones): the builders declare a valid cut, the chain-rule Jacobian
through it is exact, and `rep_grad` pulls the aggregated rows back through
all of its tensors."""

from __future__ import annotations

from typing import Any, Callable

import keras
import numpy as np
import pytest
import tensorflow as tf

import mtl_keras as mk
from mtl_keras import builders
from mtl_keras.layers import RepresentationTap
from mtl_keras.representation import RepresentationError
from mtl_keras.weighting.base import GradientAggregator
from mtl_keras.weighting.jacobian import pack_samples, representation_jacobian, task_jacobian

TASKS = [mk.Regression("a"), mk.Regression("b"), mk.Regression("c")]
N, D = 16, 6


def _encoder() -> keras.layers.Layer:
    return keras.layers.Dense(5, activation="tanh", name="encoder")


def _backbone() -> keras.Model:
    x = keras.Input((D,))
    h = keras.layers.Dense(7, activation="tanh")(x)
    return keras.Model(x, keras.layers.Dense(5, activation="tanh")(h), name="trunk")


BUILDS: dict[str, Callable[[], mk.MultiTaskModel]] = {
    "mmoe": lambda: builders.mmoe(
        keras.Input((D,)), TASKS, num_experts=3, expert_units=(4,), tower_units=(3,)
    ),
    "mmoe_encoder": lambda: builders.mmoe(
        keras.Input((D,)),
        TASKS,
        num_experts=3,
        expert_units=(4,),
        tower_units=(3,),
        encoder=_encoder(),
    ),
    "ple_1_level_encoder": lambda: builders.ple(
        keras.Input((D,)), TASKS, num_levels=1, expert_units=(4,), encoder=_encoder()
    ),
    "ple_2_levels": lambda: builders.ple(
        keras.Input((D,)), TASKS, num_levels=2, expert_units=(4,), tower_units=(3,)
    ),
    "ple_no_shared_experts_encoder": lambda: builders.ple(
        keras.Input((D,)),
        TASKS,
        num_levels=2,
        num_shared_experts=0,
        expert_units=(4,),
        encoder=_encoder(),
    ),
    "cross_stitch": lambda: builders.cross_stitch(keras.Input((D,)), TASKS, units=(5, 4)),
    "split": lambda: builders.split(
        keras.Sequential(
            [
                keras.Input((D,)),
                keras.layers.Dense(6, name="low"),
                keras.layers.Dense(4, name="top"),
            ]
        ),
        TASKS,
        split_at="low",
    ),
    "on_backbone": lambda: builders.on_backbone(_backbone(), TASKS, tower_units=(3,)),
    "cascade": lambda: builders.cascade(
        keras.Input((D,)),
        TASKS,
        dependencies={"c": ["a", "b"]},
        trunk_units=(5,),
        tower_units=(3,),
        pass_hidden=True,
    ),
    "mtan": lambda: builders.mtan(
        keras.Input((D, 1)), TASKS, trunk="conv1d", filters=(4, 6), kernel_size=2, pool=True
    ),
    "esmm": lambda: builders.esmm(
        keras.Input((D,)),
        ctr_task="a",
        cvr_task="b",
        ctcvr_task="c",
        trunk_units=(5,),
        tower_units=(3,),
        cvr_weight=1.0,
    ),
}


def _data(model: Any = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Inputs shaped for `model` (N, D) or (N, D, 1) and 0/1 targets."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D)).astype("float32")
    if model is not None:
        x = x.reshape((N, *model.inputs[0].shape[1:]))
    # 0/1 targets suit the Binary tasks of esmm as well as regression.
    return x, {t.name: (rng.normal(size=(N, 1)) > 0).astype("float32") for t in TASKS}


def _losses(model: mk.MultiTaskModel, x: Any, y: dict[str, Any]) -> tuple[Any, Any, list[Any]]:
    with tf.GradientTape(persistent=True) as tape:
        preds, reps = model._call_with_representation(tf.constant(x))
        losses = tf.stack([tf.reduce_mean(tf.square(preds[t.name] - y[t.name])) for t in TASKS])
    return tape, losses, reps


def _shared(model: mk.MultiTaskModel) -> list[Any]:
    shared, _, _ = model.variable_groups()
    return [model.trainable_variables[i] for i in shared]


@pytest.mark.parametrize("name", sorted(BUILDS))
def test_builders_declare_a_representation(name: str) -> None:
    keras.utils.set_random_seed(0)
    model = BUILDS[name]()
    assert model.representation
    assert model._representation_tensors


@pytest.mark.parametrize("method", ["pfor", "loop"])
@pytest.mark.parametrize("name", sorted(BUILDS))
def test_chain_rule_through_the_representation_is_exact(name: str, method: str) -> None:
    keras.utils.set_random_seed(0)
    model = BUILDS[name]()
    x, y = _data(model)
    tape, losses, reps = _losses(model, x, y)
    shared = _shared(model)
    direct = task_jacobian(tape, losses, shared, method="loop")
    chained = task_jacobian(tape, losses, shared, method=method, representation=reps)
    assert float(tf.reduce_max(tf.abs(direct))) > 0
    np.testing.assert_allclose(chained.numpy(), direct.numpy(), rtol=1e-4, atol=1e-6)


def test_representation_jacobian_of_several_tensors_packs_per_sample() -> None:
    keras.utils.set_random_seed(0)
    model = BUILDS["mmoe_encoder"]()
    x, y = _data()
    tape, losses, reps = _losses(model, x, y)
    assert [tuple(r.shape) for r in reps] == [(N, 3, 4), (N, 5)]
    blocks = representation_jacobian(tape, losses, reps)
    packed = pack_samples(blocks, len(TASKS)).numpy().reshape(len(TASKS), N, 3 * 4 + 5)
    with tape:
        per_task = tf.unstack(losses)
    for t, loss in enumerate(per_task):
        experts, gates = tape.gradient(loss, reps)
        np.testing.assert_allclose(packed[t, :, :12], experts.numpy().reshape(N, 12), rtol=1e-6)
        np.testing.assert_allclose(packed[t, :, 12:], gates.numpy(), rtol=1e-6)


class _SumOfRows(GradientAggregator):
    """Direction = sum of the task gradients: in rep_grad mode the update must
    equal the plain summed-loss gradient whenever the cut is complete."""

    def combination(self, jacobian: Any) -> Any:
        return tf.ones([jacobian.shape[0]], jacobian.dtype)


def _one_step(build: Callable[[], mk.MultiTaskModel], weighting: Any) -> list[np.ndarray]:
    keras.utils.set_random_seed(0)
    model = build()
    model.compile(keras.optimizers.SGD(0.1), weighting=weighting, jit_compile=False)
    x, y = _data(model)
    model.fit(x, y, batch_size=N, epochs=1, shuffle=False, verbose=0)
    return [v.numpy() for v in model.trainable_variables]


@pytest.mark.parametrize("name", sorted(BUILDS))
def test_rep_grad_sum_equals_summed_loss_gradient(name: str) -> None:
    plain = _one_step(BUILDS[name], "static")
    rep = _one_step(BUILDS[name], _SumOfRows(rep_grad=True))
    for a, b in zip(rep, plain):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_rep_grad_tower_gradients_keep_their_regularization() -> None:
    # The towers' gradients come from the per-task passes (the tasks' losses
    # only); their L2 penalty must still reach them, as in the plain step.
    def build() -> mk.MultiTaskModel:
        return builders.shared_bottom(
            keras.Input((D,)), TASKS, trunk_units=(5,), tower_units=(3,), l2=0.5
        )

    plain, rep = _one_step(build, "static"), _one_step(build, _SumOfRows(rep_grad=True))
    for a, b in zip(rep, plain):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("weighting", ["upgrad", "pcgrad", "mgda", "gradnorm"])
def test_rep_grad_trains_mmoe_with_encoder_under_xla(weighting: str) -> None:
    keras.utils.set_random_seed(0)
    model = BUILDS["mmoe_encoder"]()
    strategy = mk.weighting.get(weighting)
    strategy.rep_grad = True
    model.compile("adam", weighting=strategy, jit_compile=True)
    x, y = _data()
    hist = model.fit(x, y, batch_size=8, epochs=5, verbose=0).history
    assert np.isfinite(hist["loss"]).all()
    assert hist["loss"][-1] < hist["loss"][0]


def test_representation_survives_keras_round_trip(tmp_path: Any) -> None:
    keras.utils.set_random_seed(0)
    model = BUILDS["mmoe_encoder"]()
    model.compile("adam", weighting=mk.weighting.PCGrad(rep_grad=True))
    x, y = _data()
    model.fit(x, y, batch_size=N, epochs=1, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.representation == ["experts", "gate_input"]
    assert len(loaded._representation_tensors) == 2
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0)["a"], model.predict(x, verbose=0)["a"], rtol=1e-6
    )


# --------------------------------------------------------------- bad cuts
def _side_read(tap: bool) -> tuple[Any, dict[str, Any]]:
    x = keras.Input((D,))
    h = keras.layers.Dense(5, name="enc")(x)
    z = keras.layers.Dense(4, name="trunk")(h)
    side = RepresentationTap(name="tap")(h) if tap else h
    outputs = {
        "a": keras.layers.Dense(1, name="a")(z),
        # Task b reads the encoder beside the trunk.
        "b": keras.layers.Dense(1, name="b")(keras.layers.Concatenate()([z, side])),
    }
    return x, outputs


def test_a_path_beside_the_representation_is_rejected() -> None:
    tasks = [mk.Regression("a"), mk.Regression("b")]
    x, outputs = _side_read(tap=False)
    with pytest.raises(RepresentationError, match="'enc'.*task 'b'"):
        mk.MultiTaskModel(x, outputs, tasks=tasks, representation="trunk")
    # Reading the encoder through a tap and adding the tap fixes it.
    x, outputs = _side_read(tap=True)
    with pytest.raises(RepresentationError, match="'enc'.*task 'b'"):
        mk.MultiTaskModel(x, outputs, tasks=tasks, representation="trunk")
    model = mk.MultiTaskModel(x, outputs, tasks=tasks, representation=["trunk", "tap"])
    assert len(model._representation_tensors) == 2


def test_nested_representation_tensors_are_rejected() -> None:
    x = keras.Input((D,))
    h = keras.layers.Dense(5, name="enc")(x)
    z = keras.layers.Dense(4, name="trunk")(h)
    outputs = {"a": keras.layers.Dense(1, name="a")(z), "b": keras.layers.Dense(1, name="b")(z)}
    tasks = [mk.Regression("a"), mk.Regression("b")]
    with pytest.raises(RepresentationError, match="computed from"):
        mk.MultiTaskModel(x, outputs, tasks=tasks, representation=["trunk", "enc"])


def test_unknown_or_reused_representation_layers_are_rejected() -> None:
    x = keras.Input((D,))
    shared = keras.layers.Dense(4, name="twice")
    z = shared(shared(keras.layers.Dense(4)(x)))
    outputs = {"a": keras.layers.Dense(1, name="a")(z), "b": keras.layers.Dense(1, name="b")(z)}
    tasks = [mk.Regression("a"), mk.Regression("b")]
    with pytest.raises(RepresentationError, match="not a layer"):
        mk.MultiTaskModel(x, outputs, tasks=tasks, representation="trnk")
    with pytest.raises(RepresentationError, match="called 2 times"):
        mk.MultiTaskModel(x, outputs, tasks=tasks, representation="twice")
    with pytest.raises(RepresentationError, match="layer name"):
        mk.MultiTaskModel(x, outputs, tasks=tasks, representation=3)


def test_ple_without_shared_experts_or_encoder_shares_nothing() -> None:
    model = builders.ple(
        keras.Input((D,)), TASKS, num_levels=2, num_shared_experts=0, expert_units=(4,)
    )
    assert model.representation is None
    assert model.variable_groups()[0] == []  # no dead shared gate either


def test_split_with_a_skip_across_the_split_declares_no_representation() -> None:
    x = keras.Input((D,))
    low = keras.layers.Dense(6, name="low")(x)
    mid = keras.layers.Dense(6, name="mid")(low)
    top = keras.layers.Add(name="skip")([mid, low])
    backbone = keras.Model(x, keras.layers.Dense(4, name="out")(top))
    model = builders.split(backbone, TASKS, split_at="mid")
    assert model.representation is None
    with pytest.raises(ValueError, match="representation"):
        model.compile("adam", weighting=mk.weighting.PCGrad(rep_grad=True))
        xs, y = _data()
        model.fit(xs, y, batch_size=8, epochs=1, verbose=0)
