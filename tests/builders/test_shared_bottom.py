import keras
import numpy as np
import pytest

import mtl_keras as mk


def test_list_and_dict_inputs_are_concatenated():
    tasks = [mk.Binary("a"), mk.Regression("b")]
    a, b = keras.Input((3,), name="a_in"), keras.Input((2,), name="b_in")
    model = mk.builders.shared_bottom([a, b], tasks, trunk_units=(8,), tower_units=(4,))
    out = model.predict([np.zeros((5, 3)), np.zeros((5, 2))], verbose=0)
    assert out["a"].shape == (5, 1) and out["b"].shape == (5, 1)
    inputs = {"a_in": keras.Input((3,), name="a_in"), "b_in": keras.Input((2,), name="b_in")}
    model = mk.builders.shared_bottom(inputs, tasks, trunk_units=(8,), tower_units=())
    out = model.predict({"a_in": np.zeros((5, 3)), "b_in": np.zeros((5, 2))}, verbose=0)
    assert set(out) == {"a", "b"}


def test_raw_string_features_go_through_an_encoder():
    data = {"city": np.array(["x", "y", "x", "z"]), "age": np.array([20.0, 30.0, 40.0, 50.0])}
    encoder = mk.layers.TabularEncoder.adapt(data, categorical=["city"], numeric=["age"])
    model = mk.builders.shared_bottom(
        encoder.inputs(), [mk.Binary("a")], encoder=encoder, trunk_units=(4,)
    )
    assert model.predict(data, verbose=0)["a"].shape == (4, 1)
    with pytest.raises(ValueError, match="string features.*encoder"):
        mk.builders.shared_bottom(encoder.inputs(), [mk.Binary("a")])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"trunk_units": 16}, "trunk_units"),
        ({"tower_units": (0,)}, "tower_units"),
        ({"dropout": 1.5}, "dropout"),
        ({"l2": -1.0}, "l2"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mk.builders.shared_bottom(keras.Input((3,)), [mk.Binary("a")], **kwargs)


def test_inputs_must_be_keras_tensors():
    with pytest.raises(ValueError, match="keras.Input"):
        mk.builders.shared_bottom(np.zeros((2, 3)), [mk.Binary("a")])
