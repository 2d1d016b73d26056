"""from_pandas: every missing-label form is masked, end to end through evaluate/fit."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest

import mtl_keras as mk
from mtl_keras.data import from_pandas

N = 64


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 3)).astype("float32")
    b = (x[:, 0] > 0).astype("float32")
    b[::3] = np.nan  # NaN form
    m = (np.digitize(x[:, 1], [-0.5, 0.5])).astype("int64")
    m[1::4] = -1  # -1 form
    e = (x[:, 2] > 0).astype("float32")
    e_mask = (np.arange(N) % 2).astype("float32")  # explicit mask form
    return pd.DataFrame(
        {"x0": x[:, 0], "x1": x[:, 1], "x2": x[:, 2], "b": b, "m": m, "e": e, "e_mask": e_mask}
    )


def _model() -> mk.MultiTaskModel:
    keras.utils.set_random_seed(0)
    tasks = [mk.Binary("b"), mk.Multiclass("m", 3), mk.Binary("e"), mk.Regression("r")]
    model = mk.builders.shared_bottom(
        keras.Input((3,), name="x"), tasks, trunk_units=(8,), tower_units=(4,)
    )
    model.compile(keras.optimizers.Adam(0.01))
    return model


def _bce(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    p = np.clip(p.astype("float64"), 1e-7, 1 - 1e-7)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def _dataset(frame: pd.DataFrame, **kwargs):
    with pytest.warns(UserWarning, match="'r'"):
        return from_pandas(
            frame,
            ["x0", "x1", "x2"],
            {"b": "b", "m": "m", "e": "e", "r": "no_such_column"},
            mask_columns={"e": "e_mask"},
            stack_features=True,
            **kwargs,
        )


def test_dtypes_and_absent_column():
    frame = _frame()
    x, y, w = next(iter(_dataset(frame, batch_size=N)))
    assert x.shape == (N, 3) and x.dtype == "float32"
    assert sorted(y) == ["b", "e", "m"]  # absent column -> task absent
    assert y["b"].dtype == "float32" and np.isnan(y["b"].numpy()[::3]).all()
    assert y["m"].dtype == "int32" and (y["m"].numpy()[1::4] == -1).all()
    np.testing.assert_array_equal(w["e"].numpy(), frame["e_mask"].to_numpy())


def test_evaluate_losses_match_hand_computation_over_labelled_rows():
    frame = _frame()
    model = _model()
    ds = _dataset(frame, batch_size=N)  # one batch: the logged loss is the batch mean
    logs = model.evaluate(ds, return_dict=True, verbose=0)
    pred = model.predict(frame[["x0", "x1", "x2"]].to_numpy("float32"), verbose=0)

    b = frame["b"].to_numpy()
    keep = ~np.isnan(b)
    expected_b = _bce(b[keep], pred["b"][keep, 0]).mean()
    m = frame["m"].to_numpy()
    keep = m >= 0
    expected_m = -np.log(np.clip(pred["m"][keep, m[keep]], 1e-7, 1)).mean()
    keep = frame["e_mask"].to_numpy() > 0
    expected_e = _bce(frame["e"].to_numpy()[keep], pred["e"][keep, 0]).mean()

    np.testing.assert_allclose(logs["b_loss"], expected_b, rtol=1e-4)
    np.testing.assert_allclose(logs["m_loss"], expected_m, rtol=1e-4)
    np.testing.assert_allclose(logs["e_loss"], expected_e, rtol=1e-4)
    assert np.isnan(logs["r_loss"])  # no row labelled: unknown (NaN), not a perfect 0.0


def test_fit_end_to_end_and_raise_on_missing_column():
    frame = _frame()
    model = _model()
    history = model.fit(_dataset(frame, batch_size=16, shuffle=True, seed=0), epochs=2, verbose=0)
    # Task "r" has no labelled row: its loss and metrics are NaN, every other log is finite.
    logs = {k: v[-1] for k, v in history.history.items()}
    assert all(np.isnan(v) for k, v in logs.items() if k.startswith("r_") and k != "r_weight")
    assert all(np.isfinite(v) for k, v in logs.items() if not k.startswith("r_"))
    with pytest.raises(ValueError, match="not in the frame"):
        from_pandas(frame, ["x0"], {"r": "nope"}, missing_columns="raise")


def test_nullable_and_string_columns():
    frame = pd.DataFrame(
        {"city": ["a", None, "b"], "n": [1.0, None, 3.0], "y": pd.array([1, None, 0], "Int64")}
    )
    x, y = next(iter(from_pandas(frame, ["city", "n"], {"y": "y"})))
    assert [v.decode() for v in x["city"].numpy()] == ["a", "", "b"]
    assert np.isnan(x["n"].numpy()[1])
    assert y["y"].dtype == "float32" and np.isnan(y["y"].numpy()[1])
    with pytest.raises(ValueError, match="numeric"):
        from_pandas(frame, ["n"], {"y": "city"})
