"""`export_saved_model`: serving signature, versions, atomicity, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from _support import toy_data, toy_model

import mtl_keras as mk
from mtl_keras.export import export_saved_model
from mtl_keras.export import saved_model as saved_model_lib
from mtl_keras.export.saved_model import LOCK_FILE


def published(path) -> list[str]:
    """Entries of a base directory, without the export lock file."""
    return [n for n in os.listdir(path) if n != LOCK_FILE]


# Runs in a fresh interpreter: loads the SavedModel without mtl_keras or the
# model's Python code, calls serving_default on raw features, saves outputs.
_RELOAD = textwrap.dedent(
    """
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np
    import tensorflow as tf
    path, inputs_npz, out_npz = sys.argv[1:4]
    serve = tf.saved_model.load(path).signatures["serving_default"]
    feats = dict(np.load(inputs_npz))
    kwargs = {k: tf.constant(v) for k, v in feats.items()}
    out = serve(**kwargs)
    np.savez(out_npz, **{k: v.numpy() for k, v in out.items()})
    """
)


def _reload_and_predict(path: str, features: dict[str, np.ndarray], tmp_path) -> dict:
    inputs_npz = tmp_path / "inputs.npz"
    out_npz = tmp_path / "outputs.npz"
    # .npz cannot hold object arrays without pickle: strings go as unicode.
    np.savez(
        inputs_npz, **{k: v.astype(str) if v.dtype == object else v for k, v in features.items()}
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", _RELOAD, path, str(inputs_npz), str(out_npz)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(out_npz) as f:
        return {k: f[k] for k in f.files}


def _tabular_model() -> tuple[mk.MultiTaskModel, dict[str, np.ndarray]]:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    n = 64
    features = {
        "city": rng.choice(["paris", "lyon", "nice"], size=n).astype(object),
        "age": rng.uniform(18, 80, size=n).astype("float32"),
    }
    encoder = mk.layers.TabularEncoder.adapt(features, categorical=["city"], numeric=["age"])
    tasks = [mk.Binary("click"), mk.Multiclass("segment", num_classes=3)]
    model = mk.builders.shared_bottom(
        encoder.inputs(), tasks, encoder=encoder, trunk_units=(8,), tower_units=(4,)
    )
    labels = {
        "click": (features["age"] > 40).astype("float32"),
        "segment": rng.integers(0, 3, size=n).astype("int32"),
    }
    model.compile("adam")
    model.fit(features, labels, epochs=1, batch_size=32, verbose=0)
    # An unseen category exercises the out-of-vocabulary path in serving.
    features["city"][:3] = "berlin"
    return model, features


def test_toy_model_serving_matches_predict(tmp_path):
    model = toy_model()
    x, _ = toy_data(32)
    path = export_saved_model(model, tmp_path / "toy")
    served = _reload_and_predict(path, {"x": x}, tmp_path)
    expected = model.predict(x, verbose=0)
    assert sorted(served) == sorted(model.task_names)
    for name in model.task_names:
        np.testing.assert_allclose(served[name], expected[name], atol=1e-5)


def test_tabular_model_serving_takes_raw_features(tmp_path):
    model, features = _tabular_model()
    path = export_saved_model(model, tmp_path / "tabular")
    served = _reload_and_predict(path, features, tmp_path)
    expected = model.predict(features, verbose=0)
    assert sorted(served) == sorted(model.task_names)
    for name in model.task_names:
        assert served[name].shape == expected[name].shape
        np.testing.assert_allclose(served[name], expected[name], atol=1e-5)

    # Signature inputs: the raw feature names/dtypes with a free batch dim.
    import tensorflow as tf

    sig = tf.saved_model.load(path).signatures["serving_default"]
    _, specs = sig.structured_input_signature
    assert {k: (s.dtype, tuple(s.shape)) for k, s in specs.items()} == {
        "city": (tf.string, (None,)),
        "age": (tf.float32, (None,)),
    }
    meta = json.loads((tmp_path / "tabular" / "1" / "assets.extra" / "mtl_keras.json").read_text())
    assert [t["name"] for t in meta["tasks"]] == ["click", "segment"]
    assert [t["type"] for t in meta["tasks"]] == ["Binary", "Multiclass"]
    assert "softmax" in meta["tasks"][1]["output"]
    assert {i["name"]: i["dtype"] for i in meta["inputs"]} == {"city": "string", "age": "float32"}


def test_versions_auto_increment_and_layout(tmp_path):
    model = toy_model()
    base = tmp_path / "models"
    first = export_saved_model(model, base)
    second = export_saved_model(model, str(base))
    assert first == os.path.join(base, "1")
    assert second == os.path.join(base, "2")
    # Non-numeric entries are not versions; numeric gaps are kept.
    (base / "notes").mkdir()
    assert export_saved_model(model, base, version=7).endswith(os.sep + "7")
    assert export_saved_model(model, base).endswith(os.sep + "8")
    assert sorted(published(base)) == ["1", "2", "7", "8", "notes"]
    for v in ("1", "2", "7", "8"):
        vdir = base / v
        assert (vdir / "saved_model.pb").is_file()
        assert (vdir / "variables").is_dir()
        assert (vdir / "assets.extra" / "mtl_keras.json").is_file()
    assert mk.export.existing_versions(base) == [1, 2, 7, 8]


def test_existing_version_is_refused_unless_overwrite(tmp_path):
    model = toy_model()
    export_saved_model(model, tmp_path, version=3)
    marker = tmp_path / "3" / "marker"
    marker.write_text("old")
    with pytest.raises(FileExistsError, match="Version 3 already exists"):
        export_saved_model(model, tmp_path, version=3)
    assert marker.exists()
    path = export_saved_model(model, tmp_path, version=3, overwrite=True)
    assert not marker.exists()
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    assert sorted(published(tmp_path)) == ["3"]


def test_failed_export_leaves_nothing_behind(tmp_path, monkeypatch):
    model = toy_model()
    export_saved_model(model, tmp_path)

    def half_write(model, path, *_):
        # Simulates a crash after part of the SavedModel was written.
        os.makedirs(os.path.join(path, "variables"))
        with open(os.path.join(path, "saved_model.pb"), "wb") as f:
            f.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(saved_model_lib, "write_saved_model", half_write)
    with pytest.raises(RuntimeError, match="disk full"):
        export_saved_model(model, tmp_path)
    with pytest.raises(RuntimeError, match="disk full"):
        export_saved_model(model, tmp_path, version=1, overwrite=True)
    # A failure after the real SavedModel was fully written (temp dir holds a
    # complete export) must not publish it either.
    monkeypatch.undo()

    def metadata_fails(model, path, *_):
        assert os.path.isfile(os.path.join(path, "saved_model.pb"))
        raise RuntimeError("metadata failed")

    monkeypatch.setattr(saved_model_lib, "_write_metadata", metadata_fails)
    with pytest.raises(RuntimeError, match="metadata failed"):
        export_saved_model(model, tmp_path)
    assert sorted(published(tmp_path)) == ["1"]
    assert os.path.isfile(tmp_path / "1" / "saved_model.pb")
    assert (tmp_path / "1" / "saved_model.pb").read_bytes() != b"partial"


def test_failed_publish_restores_the_old_version(tmp_path, monkeypatch):
    model = toy_model()
    export_saved_model(model, tmp_path)
    real_rename = os.rename

    def failing_rename(src, dst):
        if os.path.basename(src).startswith(".tmp-"):
            raise OSError("rename failed")
        real_rename(src, dst)

    monkeypatch.setattr(saved_model_lib.os, "rename", failing_rename)
    # The two-rename fallback (no renameat2 exchange) restores the old version.
    monkeypatch.setattr(saved_model_lib, "_exchange", lambda a, b: False)
    with pytest.raises(FileExistsError, match="Could not publish version 1"):
        export_saved_model(model, tmp_path, version=1, overwrite=True)
    assert sorted(published(tmp_path)) == ["1"]
    assert (tmp_path / "1" / "saved_model.pb").is_file()


@pytest.mark.parametrize("version", [0, -1, 1.0, "2", True])
def test_bad_version(tmp_path, version):
    with pytest.raises(ValueError, match="`version` must be a positive integer"):
        export_saved_model(toy_model(), tmp_path, version=version)
    assert published(tmp_path) == []


def test_bad_model(tmp_path):
    with pytest.raises(ValueError, match="must be a MultiTaskModel or a functional"):
        export_saved_model("model", tmp_path)
    x = keras.Input((3,), name="x")
    single = keras.Model(x, keras.layers.Dense(1)(x))
    with pytest.raises(ValueError, match="outputs must be a dict"):
        export_saved_model(single, tmp_path)
    listed = keras.Model(x, [keras.layers.Dense(1)(x), keras.layers.Dense(1)(x)])
    with pytest.raises(ValueError, match="outputs must be a dict"):
        export_saved_model(listed, tmp_path)

    class Subclassed(keras.Model):
        def call(self, inputs):
            return {"a": inputs}

    with pytest.raises(ValueError, match="must be functional"):
        export_saved_model(Subclassed(), tmp_path)
    assert published(tmp_path) == []


def test_bad_base_dir(tmp_path):
    model = toy_model()
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(ValueError, match="is not a directory"):
        export_saved_model(model, a_file)
    with pytest.raises(ValueError, match="`base_dir` must be a path"):
        export_saved_model(model, None)


def test_plain_functional_model_with_dict_outputs(tmp_path):
    x = keras.Input((3,), name="features")
    model = keras.Model(x, {"score": keras.layers.Dense(2)(x)})
    path = export_saved_model(model, tmp_path)
    meta = json.loads(open(os.path.join(path, "assets.extra", "mtl_keras.json")).read())
    assert meta["tasks"][0]["name"] == "score"
    assert meta["tasks"][0]["type"] is None
    assert meta["inputs"] == [{"name": "features", "dtype": "float32", "shape": [None, 3]}]


def test_metadata_describes_outputs_through_the_task(tmp_path):
    class Score(mk.Regression):
        def describe_output(self) -> str:
            return "a calibrated score in [0, 1]"

    model = mk.builders.shared_bottom(
        keras.Input((3,), name="x"),
        [Score("score"), mk.Multiclass("kind", num_classes=4)],
        trunk_units=(4,),
        tower_units=(),
    )
    path = export_saved_model(model, tmp_path)
    with open(os.path.join(path, "assets.extra", "mtl_keras.json")) as f:
        outputs = {t["name"]: t["output"] for t in json.load(f)["tasks"]}
    assert outputs["score"] == "a calibrated score in [0, 1]"
    assert outputs["kind"].startswith("class probabilities (softmax over 4 classes)")
