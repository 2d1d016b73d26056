"""Subset signatures, warm-up requests, models.config, check_export, validate_request."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from _support import toy_data, toy_model
from test_saved_model import _tabular_model

from mtl_keras.export import (
    RequestError,
    check_export,
    export_saved_model,
    inspect_saved_model,
    read_models_config,
    read_warmup_requests,
    signature_spec,
    validate_request,
    write_models_config,
)
from mtl_keras.export.saved_model import LOCK_FILE


def published(path) -> list[str]:
    """Entries of a base directory, without the export lock file."""
    return [n for n in os.listdir(path) if n != LOCK_FILE]


@pytest.fixture(scope="module")
def tabular_export(tmp_path_factory):
    model, features = _tabular_model()
    base = tmp_path_factory.mktemp("census")
    warm = {k: v[:3] for k, v in features.items()}
    path = export_saved_model(
        model, base, signatures={"click_only": ["click"]}, warmup_examples=warm
    )
    return model, features, path


# Fresh interpreter, no mtl_keras: TF2 loader and TF Serving's TF1 session
# loader (tensors by name) on the same raw features.
_RELOAD_BOTH = textwrap.dedent(
    """
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np
    import tensorflow as tf
    path, inputs_npz, out_npz = sys.argv[1:4]
    feats = {k: (v.astype(object) if v.dtype.kind == "U" else v)
             for k, v in np.load(inputs_npz).items()}
    out = {}
    sig = tf.saved_model.load(path).signatures["serving_default"]
    for k, v in sig(**{k: tf.constant(v) for k, v in feats.items()}).items():
        out["tf2/" + k] = v.numpy()
    g = tf.Graph()
    with g.as_default(), tf.compat.v1.Session(graph=g) as sess:
        mg = tf.compat.v1.saved_model.loader.load(sess, ["serve"], path)
        sd = mg.signature_def["serving_default"]
        res = sess.run({k: t.name for k, t in sd.outputs.items()},
                       {sd.inputs[k].name: v for k, v in feats.items()})
    for k, v in res.items():
        out["tf1/" + k] = v
    np.savez(out_npz, **out)
    """
)


@pytest.mark.slow
def test_fresh_process_tf2_and_tf1_loaders_match_keras(tabular_export, tmp_path):
    model, features, path = tabular_export
    np.savez(
        tmp_path / "in.npz",
        **{k: v.astype(str) if v.dtype == object else v for k, v in features.items()},
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _RELOAD_BOTH,
            path,
            str(tmp_path / "in.npz"),
            str(tmp_path / "out.npz"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = model.predict(features, verbose=0)
    with np.load(tmp_path / "out.npz") as out:
        for loader in ("tf1", "tf2"):
            for task in ("click", "segment"):
                np.testing.assert_allclose(out[f"{loader}/{task}"], expected[task], atol=1e-5)


def test_check_export_both_loaders_all_signatures(tabular_export):
    model, features, path = tabular_export
    report = check_export(path, model, features)
    assert report["tags"] == [["serve"]]
    assert set(report["signatures"]) == {"serving_default", "click_only"}
    assert set(report["signatures"]["click_only"]["outputs"]) == {"click"}
    assert report["signatures"]["serving_default"]["inputs"]["city"]["dtype"] == "string"
    for loader in ("tf1", "tf2"):
        assert set(report["max_abs_diff"][loader]) == {"serving_default", "click_only"}
        assert max(report["max_abs_diff"][loader]["serving_default"].values()) <= 1e-5
    # Expected predictions can come from elsewhere (another process).
    expected = model.predict(features, verbose=0)
    bad = {**expected, "click": expected["click"] + 0.5}
    with pytest.raises(AssertionError, match="click"):
        check_export(path, bad, features, signatures=["click_only"])


def test_subset_signature_returns_only_its_tasks(tabular_export):
    model, features, path = tabular_export
    sigs = tf.saved_model.load(path).signatures
    out = sigs["click_only"](
        **{k: tf.constant(v.astype(str) if v.dtype == object else v) for k, v in features.items()}
    )
    assert list(out) == ["click"]
    np.testing.assert_allclose(
        out["click"].numpy(), model.predict(features, verbose=0)["click"], atol=1e-5
    )
    meta = inspect_saved_model(path)
    assert sorted(meta["signatures"]) == ["click_only", "serving_default"]


def test_subset_signature_validation(tmp_path):
    model = toy_model()
    with pytest.raises(ValueError, match=r"unknown task\(s\) \['income'\]"):
        export_saved_model(model, tmp_path, signatures={"income_only": ["income"]})
    with pytest.raises(ValueError, match="reserved"):
        export_saved_model(model, tmp_path, signatures={"serving_default": ["click"]})
    with pytest.raises(ValueError, match="non-empty list"):
        export_saved_model(model, tmp_path, signatures={"c": "click"})
    with pytest.raises(ValueError, match="non-empty list"):
        export_saved_model(model, tmp_path, signatures={"c": []})
    assert published(tmp_path) == []


def test_warmup_file_parses_as_prediction_logs(tabular_export):
    _, features, path = tabular_export
    warm = os.path.join(path, "assets.extra", "tf_serving_warmup_requests")
    assert os.path.isfile(warm)
    logs = read_warmup_requests(path)
    assert [log.WhichOneof("log_type") for log in logs] == ["predict_log"] * 2
    sigs = [log.predict_log.request.model_spec.signature_name for log in logs]
    assert sigs == ["serving_default", "click_only"]
    inputs = logs[0].predict_log.request.inputs
    assert tf.as_dtype(inputs["city"].dtype) == tf.string
    assert tf.as_dtype(inputs["age"].dtype) == tf.float32
    np.testing.assert_array_equal(
        tf.make_ndarray(inputs["city"]), [s.encode() for s in features["city"][:3]]
    )
    np.testing.assert_allclose(tf.make_ndarray(inputs["age"]), features["age"][:3])


def test_bad_warmup_examples_fail_before_publishing(tmp_path):
    with pytest.raises(RequestError, match="Missing feature"):
        export_saved_model(toy_model(), tmp_path, warmup_examples={"y": np.zeros((2, 8))})
    assert published(tmp_path) == []


def test_models_config_round_trip(tmp_path):
    path = write_models_config(
        tmp_path / "models.config",
        {"census_income": "/models/census_income", "toy": "/models/toy"},
        version_policy={"census_income": [1, 2], "toy": "all"},
        version_labels={"census_income": {"stable": 1, "canary": 2}},
    )
    text = open(path).read()
    assert text.startswith("model_config_list")
    config = read_models_config(path)
    entries = {c.name: c for c in config.model_config_list.config}
    assert entries["census_income"].base_path == "/models/census_income"
    assert entries["census_income"].model_platform == "tensorflow"
    assert list(entries["census_income"].model_version_policy.specific.versions) == [1, 2]
    assert dict(entries["census_income"].version_labels) == {"stable": 1, "canary": 2}
    assert entries["toy"].model_version_policy.WhichOneof("policy_choice") == "all"
    latest = read_models_config(write_models_config(tmp_path / "m2", {"a": "/m/a"}, 3))
    assert latest.model_config_list.config[0].model_version_policy.latest.num_versions == 3
    with pytest.raises(ValueError, match="version_policy must be"):
        write_models_config(tmp_path / "m3", {"a": "/m/a"}, "newest")
    with pytest.raises(ValueError, match="unknown model"):
        write_models_config(tmp_path / "m3", {"a": "/m/a"}, {"b": "all"})
    assert not (tmp_path / "m3").exists()


def test_validate_request_errors():
    spec = signature_spec(
        [
            {"name": "city", "dtype": "string", "shape": [None]},
            {"name": "x", "dtype": "float32", "shape": [None, 2]},
            {"name": "n", "dtype": "int64", "shape": [None]},
        ]
    )
    ok = validate_request(spec, {"city": ["paris", b"lyon"], "x": [[1, 2], [3, 4]], "n": [1.0, 2]})
    assert ok["city"].tolist() == [b"paris", b"lyon"]
    assert ok["x"].dtype == np.float32 and ok["n"].dtype == np.int64
    good = {"city": ["a"], "x": [[1.0, 2.0]], "n": [1]}
    with pytest.raises(RequestError, match=r"Missing feature\(s\) \['n'\]"):
        validate_request(spec, {"city": ["a"], "x": [[1.0, 2.0]]})
    with pytest.raises(RequestError, match=r"unexpected feature\(s\) \['cty'\]"):
        validate_request(spec, {**good, "cty": ["a"]})
    with pytest.raises(RequestError, match="'city': expected strings"):
        validate_request(spec, {**good, "city": [3.0]})
    with pytest.raises(RequestError, match="'x': expected float32"):
        validate_request(spec, {**good, "x": [["a", "b"]]})
    with pytest.raises(RequestError, match="'n': expected int64 .*non-integral"):
        validate_request(spec, {**good, "n": [1.5]})
    with pytest.raises(RequestError, match="'x': expected rank 2"):
        validate_request(spec, {**good, "x": [1.0, 2.0]})
    with pytest.raises(
        RequestError, match=r"'x': expected shape \(batch, 2\).*dimension 1 must be 2"
    ):
        validate_request(spec, {**good, "x": [[1.0, 2.0, 3.0]]})
    with pytest.raises(RequestError, match="same number of rows"):
        validate_request(spec, {**good, "n": [1, 2]})


def test_signature_spec_from_export_dir_and_model(tabular_export):
    model, _, path = tabular_export
    from_dir = signature_spec(path)
    from_model = signature_spec(model)
    assert {k: (v.dtype, v.shape.as_list()) for k, v in from_dir.items()} == {
        k: (v.dtype, v.shape.as_list()) for k, v in from_model.items()
    }


def test_toy_check_export(tmp_path):
    model = toy_model()
    x, _ = toy_data(8)
    path = export_saved_model(model, tmp_path)
    report = check_export(path, model, {"x": x})
    assert set(report["max_abs_diff"]["tf1"]["serving_default"]) == {"click", "dwell"}
