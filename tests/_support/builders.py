"""Shared checks every builder's model must pass (keras-hub style).

Usage in a builder test::

    from _support.builders import run_builder_checks

    def test_my_builder(tmp_path):
        x, y = toy_data()
        model = builders.my_builder(keras.Input((8,), name="x"), tasks, ...)
        run_builder_checks(model, x, y, tmp_path)

`run_builder_checks` compiles the model when it is not compiled yet, fits it
for a few epochs (losses finite and decreasing), evaluates it, round-trips it
through `.keras` and through `export_saved_model` reloaded in a separate Python
process, and checks that all three give the same predictions. The separate
process is started once per test session (per xdist worker) and serves every
builder's export: TensorFlow is imported once, not once per builder.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mtl_keras.export import export_saved_model
from mtl_keras.export.saved_model import METADATA_FILE

# Runs in a separate interpreter so that nothing registered or cached in the
# test process (custom objects, traced functions) can mask a broken export.
# One request per stdin line (JSON [export_dir, inputs_path, out_path]); one
# answer per request on stdout, prefixed so that stray prints are skipped.
_RELOAD_SERVER = textwrap.dedent(
    """
    import os, sys, json, traceback
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np
    import tensorflow as tf

    for line in sys.stdin:
        export_dir, inputs_path, out_path = json.loads(line)
        try:
            with open(os.path.join(export_dir, "assets.extra", "{metadata}")) as f:
                meta = json.load(f)
            data = np.load(inputs_path)
            serve = tf.saved_model.load(export_dir).signatures[meta["signature"]]
            kwargs = {{
                spec["name"]: tf.constant(data[spec["name"]], dtype=spec["dtype"])
                for spec in meta["inputs"]
            }}
            outputs = serve(**kwargs)
            np.savez(out_path, **{{k: v.numpy() for k, v in outputs.items()}})
            answer = {{"ok": True}}
        except Exception:
            answer = {{"error": traceback.format_exc()}}
        print("@@reload " + json.dumps(answer), flush=True)
    """
)
_ANSWER = "@@reload "
_server: subprocess.Popen | None = None


def _reload_server() -> subprocess.Popen:
    """The session's SavedModel-reloading process (started on first use)."""
    global _server
    if _server is None or _server.poll() is not None:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
        _server = subprocess.Popen(
            [sys.executable, "-u", "-c", _RELOAD_SERVER.format(metadata=METADATA_FILE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,
            env=env,
        )
        atexit.register(_stop_server, _server)
    return _server


def _stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _named_inputs(model: keras.Model, x: Any) -> dict[str, np.ndarray]:
    """`x` keyed by the serving signature's input names."""
    struct = model.input
    if isinstance(struct, dict):
        return {k: np.asarray(x[k]) for k in struct}
    flat_inputs = keras.tree.flatten(struct)
    flat_x = keras.tree.flatten(x) if isinstance(x, (list, tuple)) else [x]
    if len(flat_inputs) != len(flat_x):
        raise ValueError(f"Model has {len(flat_inputs)} inputs, x has {len(flat_x)}.")
    return {t.name: np.asarray(v) for t, v in zip(flat_inputs, flat_x)}


def _predict(model: keras.Model, x: Any) -> dict[str, np.ndarray]:
    out = model.predict(x, batch_size=len(keras.tree.flatten(x)[0]), verbose=0)
    return {k: np.asarray(v) for k, v in out.items()}


def _assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray], what: str, atol: float):
    assert sorted(a) == sorted(b), f"{what}: outputs {sorted(b)} != {sorted(a)}"
    for k in a:
        np.testing.assert_allclose(b[k], a[k], atol=atol, err_msg=f"{what}: output {k!r}")


def reload_saved_model_in_subprocess(
    export_dir: str, inputs: dict[str, np.ndarray], tmp_path: Path, timeout: float = 300
) -> dict[str, np.ndarray]:
    """Serves `inputs` with the SavedModel at `export_dir` in the session's
    separate reload process (never the test process)."""
    inputs_path = tmp_path / "serving_inputs.npz"
    out_path = tmp_path / "serving_outputs.npz"
    np.savez(inputs_path, **inputs)
    proc = _reload_server()
    request = json.dumps([str(export_dir), str(inputs_path), str(out_path)]) + "\n"
    proc.stdin.write(request.encode())
    proc.stdin.flush()
    deadline = time.monotonic() + timeout
    answer = None
    # Raw reads of the pipe (no Python-side buffer that select() cannot see).
    fd = proc.stdout.fileno()
    pending = b""
    while answer is None:
        if b"\n" not in pending:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                proc.kill()
                raise AssertionError(f"SavedModel reload timed out after {timeout} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"SavedModel reload process died (exit {proc.poll()})")
            pending += chunk
            continue
        line, pending = pending.split(b"\n", 1)
        text = line.decode("utf-8", "replace")
        if text.startswith(_ANSWER):
            answer = json.loads(text[len(_ANSWER) :])
    assert "ok" in answer, f"SavedModel reload failed:\n{answer['error'][-4000:]}"
    with np.load(out_path) as data:
        return {k: data[k] for k in data.files}


def run_builder_checks(
    model: keras.Model,
    x: Any,
    y: dict[str, np.ndarray],
    tmp_path: Path,
    *,
    epochs: int = 2,
    batch_size: int = 32,
    learning_rate: float = 0.01,
    check_decreasing: bool = True,
    check_saved_model: bool = True,
    atol: float = 1e-5,
) -> dict[str, Any]:
    """Fit / evaluate / `.keras` round trip / SavedModel in a fresh process.

    Args:
        model: a builder's `MultiTaskModel`; compiled here with
            `Adam(learning_rate)` unless already compiled.
        x: model inputs (array, list or dict matching the model inputs).
        y: labels keyed by task name (tasks may be absent: unlabelled).
        tmp_path: a scratch directory (pytest's `tmp_path`).
        epochs: training epochs (>= 2 to check that the loss decreases).
        batch_size: training batch size.
        learning_rate: Adam learning rate when compiling here.
        check_decreasing: require the last epoch's loss < the first's (use on
            a learnable toy problem).
        check_saved_model: also export with `export_saved_model` and reload
            in a subprocess (the slowest step, ~5-10 s).
        atol: tolerance on prediction differences after reloading.

    Returns:
        dict with `history` (the fit history dict), `predictions`,
        `keras_model` (the reloaded `.keras` model) and `export_dir`.

    Example:
    >>> run_builder_checks(model, x, y, tmp_path)  # doctest: +SKIP
    """
    if not model.compiled:
        model.compile(keras.optimizers.Adam(learning_rate))
    history = model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0).history
    losses = np.asarray(history["loss"], dtype="float64")
    assert np.all(np.isfinite(losses)), f"non-finite training loss: {losses}"
    if check_decreasing and epochs >= 2:
        assert losses[-1] < losses[0], f"training loss did not decrease: {losses}"

    results = model.evaluate(x, y, batch_size=batch_size, verbose=0, return_dict=True)
    assert np.isfinite(results["loss"]), f"non-finite evaluation loss: {results}"

    expected = _predict(model, x)
    for name, value in expected.items():
        assert np.all(np.isfinite(value)), f"non-finite predictions for {name!r}"

    keras_path = tmp_path / "model.keras"
    model.save(keras_path)
    reloaded = keras.saving.load_model(keras_path)
    assert type(reloaded) is type(model)
    _assert_same(expected, _predict(reloaded, x), ".keras reload", atol)

    export_dir = None
    if check_saved_model:
        export_dir = export_saved_model(model, tmp_path / "export")
        served = reload_saved_model_in_subprocess(export_dir, _named_inputs(model, x), tmp_path)
        _assert_same(expected, served, "SavedModel reload (fresh process)", atol)
        with open(os.path.join(export_dir, "assets.extra", METADATA_FILE)) as f:
            meta = json.load(f)
        assert [t["name"] for t in meta["tasks"]] == list(expected)

    return {
        "history": history,
        "predictions": expected,
        "keras_model": reloaded,
        "export_dir": export_dir,
    }
