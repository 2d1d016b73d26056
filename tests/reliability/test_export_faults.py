"""Exports and serving requests under faults (issue #13, items 15-18).

Concurrent writers and SIGKILLs run in child processes (`CHILD` below). Each
child stops by itself: it kills itself at a fixed point or finishes, and
waits for the other writer at most `BARRIER_SECONDS`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from mtl_keras import serving
from mtl_keras.export import (
    RequestError,
    SavedModelError,
    export_saved_model,
    recover_versions,
    signature_spec,
    validate_request,
)
from mtl_keras.export.saved_model import LOCK_FILE

BARRIER_SECONDS = 120
CHILD_TIMEOUT = 300

# args: base_dir, writer id, scenario, n_writers. Prints one JSON line.
CHILD = textwrap.dedent(
    """
    import json, os, signal, sys, time
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import keras
    from mtl_keras.export import saved_model as sm

    base, wid, scenario, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    x = keras.Input((3,), name="x")
    model = keras.Model(x, {"y": keras.layers.Dense(1)(x)}, name=f"writer_{wid}")

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    # Every writer has finished writing before any publishes (a real overlap).
    write_name = "write_saved_model" if hasattr(sm, "write_saved_model") else "_write_saved_model"
    real_write = getattr(sm, write_name)

    def write_then_wait(*args, **kwargs):
        real_write(*args, **kwargs)
        open(os.path.join(base, f"..entered-{wid}"), "w").close()
        deadline = time.time() + float(os.environ["BARRIER_SECONDS"])
        while time.time() < deadline:
            if sum(name.startswith("..entered-") for name in os.listdir(base)) >= n:
                return
            time.sleep(0.05)
        raise TimeoutError("the other writer never arrived")

    setattr(sm, write_name, write_then_wait)

    if scenario in ("kill_in_publish", "kill_in_fallback"):
        real_rename = os.rename

        def rename_then_die(src, dst):
            real_rename(src, dst)
            if os.path.basename(src).isdigit():  # the old version moved aside
                die()

        sm.os.rename = rename_then_die
        if scenario == "kill_in_fallback":
            sm._exchange = lambda a, b: False
        elif hasattr(sm, "_exchange"):
            real_exchange = sm._exchange

            def exchange_then_die(a, b):
                done = real_exchange(a, b)
                if done:
                    die()  # before the replaced version is cleaned up
                return done

            sm._exchange = exchange_then_die
    overwrite = scenario != "next_version"
    try:
        path = sm.export_saved_model(
            model, base, version=None if scenario == "next_version" else 1, overwrite=overwrite
        )
        print(json.dumps({"ok": path}))
    except Exception as e:
        print(json.dumps({"error": type(e).__name__, "message": str(e)}))
    """
)


def tiny_model(name: str) -> keras.Model:
    x = keras.Input((3,), name="x")
    return keras.Model(x, {"y": keras.layers.Dense(1)(x)}, name=name)


def run_writers(base, scenario: str, n: int) -> list[dict]:
    script = os.path.join(base, "..child.py")
    with open(script, "w") as f:
        f.write(CHILD)
    procs = [
        subprocess.Popen(
            [sys.executable, script, str(base), str(i), scenario, str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={
                **os.environ,
                "TF_CPP_MIN_LOG_LEVEL": "3",
                "BARRIER_SECONDS": str(BARRIER_SECONDS),
            },
        )
        for i in range(n)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=CHILD_TIMEOUT)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        results.append(
            json.loads(lines[-1]) if lines else {"returncode": p.returncode, "stderr": err[-2000:]}
        )
    for name in os.listdir(base):
        if name.startswith(".."):
            os.remove(os.path.join(base, name))
    return results


def entries(base) -> list[str]:
    return sorted(n for n in os.listdir(base) if n != LOCK_FILE)


def model_name(version_dir) -> str:
    with open(os.path.join(version_dir, "assets.extra", "mtl_keras.json")) as f:
        return json.load(f)["model_name"]


# ------------------------------------------------------- 15: concurrency
@pytest.mark.slow
def test_concurrent_exports_with_next_version_both_land(tmp_path):
    results = run_writers(tmp_path, "next_version", 2)
    assert all("ok" in r for r in results), results
    assert sorted(os.path.basename(r["ok"]) for r in results) == ["1", "2"]
    assert entries(tmp_path) == ["1", "2"]
    assert {model_name(tmp_path / v) for v in ("1", "2")} == {"writer_0", "writer_1"}


@pytest.mark.slow
def test_concurrent_overwrites_are_never_both_told_success(tmp_path):
    export_saved_model(tiny_model("original"), tmp_path, version=1)
    results = run_writers(tmp_path, "overwrite", 2)
    winners = [r for r in results if "ok" in r]
    losers = [r for r in results if "ok" not in r]
    assert len(winners) == 1, results
    assert losers[0]["error"] == "ConcurrentExportError", results
    assert "another export" in losers[0]["message"]
    assert entries(tmp_path) == ["1"]
    winner = "writer_0" if results[0] is winners[0] else "writer_1"
    assert model_name(tmp_path / "1") == winner


# ------------------------------------------------------ 16: SIGKILL
@pytest.mark.slow
def test_sigkill_while_overwriting_keeps_a_complete_version(tmp_path):
    export_saved_model(tiny_model("original"), tmp_path, version=1)
    (result,) = run_writers(tmp_path, "kill_in_publish", 1)
    assert result.get("returncode") == -9, result
    # Visible without any repair: TF Serving never sees the version vanish.
    assert "1" in entries(tmp_path)
    assert set(signature_spec(tmp_path / "1")) == {"x"}  # complete, readable
    assert model_name(tmp_path / "1") in ("original", "writer_0")
    # The killed writer's leftovers are cleaned by the next export.
    export_saved_model(tiny_model("next"), tmp_path)
    assert entries(tmp_path) == ["1", "2"]


@pytest.mark.slow
def test_sigkill_between_fallback_renames_is_recovered(tmp_path):
    export_saved_model(tiny_model("original"), tmp_path, version=1)
    (result,) = run_writers(tmp_path, "kill_in_fallback", 1)
    assert result.get("returncode") == -9, result
    # Without renameat2 the old version was aside when the writer died; the
    # next export puts it back before choosing its own version, and removes
    # the dead writer's temporary directory.
    path = export_saved_model(tiny_model("next"), tmp_path)
    assert os.path.basename(path) == "2"
    assert entries(tmp_path) == ["1", "2"]
    assert model_name(tmp_path / "1") == "original"
    assert model_name(tmp_path / "2") == "next"


def test_recover_versions_restores_and_cleans(tmp_path):
    dead_pid = 2**22 + 12345  # above Linux's pid_max default: never alive
    (tmp_path / "4").mkdir()
    (tmp_path / f".old-4-{dead_pid}-aa").mkdir()  # 4 exists: a leftover
    (tmp_path / f".old-5-{dead_pid}-bb").mkdir()  # 5 missing: restore
    (tmp_path / f".tmp-6-{dead_pid}-cc").mkdir()  # dead writer
    (tmp_path / f".tmp-7-{os.getpid()}-dd").mkdir()  # a live writer: kept
    actions = recover_versions(tmp_path)
    assert len(actions) == 3
    assert entries(tmp_path) == [f".tmp-7-{os.getpid()}-dd", "4", "5"]


def test_export_fsyncs_before_publishing(tmp_path, monkeypatch):
    from mtl_keras.export import saved_model as sm

    synced, published = [], []
    real_fsync, real_rename = os.fsync, os.rename
    monkeypatch.setattr(sm.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    monkeypatch.setattr(
        sm.os, "rename", lambda a, b: (published.append(len(synced)), real_rename(a, b))[1]
    )
    export_saved_model(tiny_model("m"), tmp_path)
    # Files and directories were flushed before the rename, the base after it.
    assert published and published[0] >= 5
    assert len(synced) > published[0]


# ------------------------------------------- 17: signature_spec(path)
@pytest.fixture
def exported(tmp_path):
    return export_saved_model(tiny_model("m"), tmp_path)


def test_signature_spec_reads_the_saved_model(exported):
    spec = signature_spec(exported)
    assert spec["x"].shape.as_list() == [None, 3]
    assert spec["x"].dtype.name == "float32"


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda i: i[0].update(dtype="int64"), "Feature 'x'.*int64.*float32"),
        (lambda i: i[0].update(shape=[None, 4]), "Feature 'x'.*4.*3"),
        (lambda i: i[0].update(name="z"), r"lists inputs \['z'\].*takes \['x'\]"),
        (lambda i: i.append({"name": "w", "dtype": "float32", "shape": [None]}), "lists inputs"),
    ],
)
def test_signature_spec_rejects_edited_metadata(exported, edit, match):
    meta_path = os.path.join(exported, "assets.extra", "mtl_keras.json")
    with open(meta_path) as f:
        meta = json.load(f)
    edit(meta["inputs"])
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    with pytest.raises(SavedModelError, match=match):
        signature_spec(exported)


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_signature_spec_rejects_truncated_saved_model(exported, keep):
    pb = os.path.join(exported, "saved_model.pb")
    data = open(pb, "rb").read()
    with open(pb, "wb") as f:
        f.write(data[: int(len(data) * keep)])
    with pytest.raises(SavedModelError, match="saved_model.pb|serve"):
        signature_spec(exported)


def test_signature_spec_rejects_corrupt_files(exported):
    pb = os.path.join(exported, "saved_model.pb")
    index = os.path.join(exported, "variables", "variables.index")
    index_bytes = open(index, "rb").read()
    with open(index, "wb") as f:
        f.write(index_bytes[: len(index_bytes) // 2])
    with pytest.raises(SavedModelError, match="variables"):
        signature_spec(exported)
    os.remove(index)
    with pytest.raises(SavedModelError, match="variables.index is missing"):
        signature_spec(exported)
    with open(pb, "wb") as f:
        f.write(b"\xff" * 64)
    with pytest.raises(SavedModelError, match="truncated or corrupt"):
        signature_spec(exported)
    os.remove(pb)
    with pytest.raises(SavedModelError, match="No saved_model.pb"):
        signature_spec(exported)


# --------------------------------------------------- 18: request helpers
FLOAT_SPEC = [{"name": "age", "dtype": "float32", "shape": [None]}]
INT_SPEC = [{"name": "clicks", "dtype": "int64", "shape": [None]}]
INT32_SPEC = [{"name": "rank", "dtype": "int32", "shape": [None]}]


@pytest.mark.parametrize(
    "spec, value, match",
    [
        (FLOAT_SPEC, [1.0, float("nan")], "'age'.*NaN or infinite"),
        (FLOAT_SPEC, [float("inf")], "'age'.*NaN or infinite"),
        (FLOAT_SPEC, [-float("inf")], "'age'.*NaN or infinite"),
        (FLOAT_SPEC, [1e300], "'age'.*overflow float32"),
        (FLOAT_SPEC, [-1e39], "'age'.*overflow float32"),
        (INT_SPEC, [1e20], "'clicks'.*out of the int64 range"),
        (INT_SPEC, [-1e19], "'clicks'.*out of the int64 range"),
        (INT_SPEC, [10**20], "'clicks'.*out of the int64 range"),
        (INT_SPEC, np.array([2**64 - 1], np.uint64), "'clicks'.*out of the int64 range"),
        (INT_SPEC, [float("nan")], "'clicks'.*NaN or infinite"),
        (INT32_SPEC, [2**31], "'rank'.*out of the int32 range"),
        (INT32_SPEC, [3e9], "'rank'.*out of the int32 range"),
    ],
)
def test_requests_reject_non_finite_and_overflow(spec, value, match):
    features = {spec[0]["name"]: value}
    with pytest.raises(RequestError, match=match):
        validate_request(spec, features)
    for build in (serving.rest_payload, lambda f, spec: serving.grpc_request("m", f, spec=spec)):
        with pytest.raises(RequestError, match=match):
            build(features, spec=spec)


def test_limits_are_accepted():
    out = validate_request(
        FLOAT_SPEC + INT_SPEC,
        {"age": [3.4e38, -3.4e38], "clicks": [2**63 - 1, -(2**63)]},
    )
    assert out["clicks"].tolist() == [2**63 - 1, -(2**63)]
    assert np.isfinite(out["age"]).all()


@pytest.mark.parametrize("value", [[float("nan")], [float("inf")], np.array([np.inf], "float32")])
def test_payload_without_spec_is_valid_json(value):
    with pytest.raises(RequestError, match="'x'.*NaN or infinite"):
        serving.rest_payload({"x": value})
    body = serving.rest_payload({"x": [1.5, 2.0], "city": ["paris", "rome"]})
    json.dumps(body, allow_nan=False)  # strict JSON: raises on NaN/Infinity


@pytest.mark.parametrize("columnar", [False, True])
def test_empty_batch_is_refused_by_builder_and_decoder(columnar):
    with pytest.raises(RequestError, match="[Ee]mpty batch"):
        serving.rest_payload({"x": np.zeros((0, 2))}, columnar=columnar)
    with pytest.raises(RequestError, match="empty batch"):
        serving.rest_payload(
            {"x": np.zeros((0, 2))},
            columnar=columnar,
            spec=signature_spec([{"name": "x", "dtype": "float32", "shape": [None, 2]}]),
        )
    body = {"instances": []} if not columnar else {"inputs": {"x": []}}
    with pytest.raises(ValueError, match="non-empty"):
        serving.decode_rest_request(body)
    # One row round-trips through both.
    one = serving.rest_payload({"x": np.ones((1, 2))}, columnar=columnar)
    assert serving.decode_rest_request(json.dumps(one))["x"].shape == (1, 2)
