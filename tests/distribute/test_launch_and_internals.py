"""Fast checks: the launcher (prefixes, exit codes, stopping the others,
timeout), TF_CONFIG helpers and the Keras internals the MWMS workaround uses."""

from __future__ import annotations

import io
import json
import sys
import time

import pytest

from mtl_keras.distribute import cluster, launch
from mtl_keras.distribute.keras_fixes import check_keras_internals


def test_keras_internals_unchanged():
    # Fails when a Keras upgrade changes what keras_fixes replaces
    # (keras-team/keras#20585): re-check whether the workaround is needed.
    assert check_keras_internals() == []


def test_launch_sets_tf_config_and_prefixes_output():
    script = (
        "import json, os; c = json.loads(os.environ['TF_CONFIG']); "
        "print(c['task']['index'], len(c['cluster']['worker']), os.environ['MTL_KERAS_WORKER'])"
    )
    out = io.StringIO()
    code = launch.launch([sys.executable, "-c", script], workers=3, out=out)
    assert code == 0
    lines = sorted(out.getvalue().splitlines())
    assert lines == ["[worker 0] 0 3 0", "[worker 1] 1 3 1", "[worker 2] 2 3 2"]


def test_launch_stops_the_others_and_propagates_the_exit_code():
    script = (
        "import os, sys, time\n"
        "if os.environ['MTL_KERAS_WORKER'] == '1': sys.exit(7)\n"
        "time.sleep(60)\n"
    )
    out = io.StringIO()
    started = time.monotonic()
    code = launch.launch([sys.executable, "-c", script], workers=2, out=out)
    assert code == 7
    assert time.monotonic() - started < 30  # worker 0 was stopped, not waited for
    assert "worker 1 exited with 7; stopping the others" in out.getvalue()


def test_launch_timeout_stops_all():
    out = io.StringIO()
    code = launch.launch(
        [sys.executable, "-c", "import time; time.sleep(60)"], workers=2, timeout=1, out=out
    )
    assert code == launch.TIMEOUT_EXIT
    assert "timeout" in out.getvalue()


def test_launch_cli_runs_a_script(tmp_path, capfd):
    script = tmp_path / "s.py"
    script.write_text("import sys; print('args', sys.argv[1:])\n")
    assert launch.main(["--workers", "2", str(script), "--lr", "0.1"]) == 0
    captured = capfd.readouterr().out
    assert "[worker 1] args ['--lr', '0.1']" in captured


def test_tf_config_and_chief(monkeypatch):
    addresses = cluster.loopback_addresses(2)
    assert len(set(addresses)) == 2
    config = cluster.tf_config(addresses, 1)
    assert config == {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    assert cluster.num_workers() == 2 and cluster.task() == ("worker", 1)
    assert not cluster.is_chief()
    monkeypatch.setenv("TF_CONFIG", json.dumps(cluster.tf_config(addresses, 0)))
    assert cluster.is_chief()
    with pytest.raises(ValueError, match="outside the cluster"):
        cluster.tf_config(addresses, 2)
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        cluster.current_config()


def test_logs_pack_into_one_vector_and_back():
    import numpy as np
    import tensorflow as tf

    from mtl_keras.distribute import keras_fixes

    logs = {
        "loss": tf.constant(1.5),
        "f1": tf.constant([0.25, 0.75]),
        "count": tf.constant(3, tf.int32),
    }
    packed, specs = keras_fixes._pack(logs)
    assert packed.shape == (4,) and packed.dtype == tf.float32
    back = keras_fixes._unpack(packed, specs)
    assert list(back) == ["loss", "f1", "count"]
    assert back["count"].dtype == tf.int32 and int(back["count"]) == 3
    np.testing.assert_array_equal(back["f1"].numpy(), [0.25, 0.75])

    @tf.function(input_signature=[tf.TensorSpec([None])])
    def unknown(v):
        return keras_fixes._pack({"per_row": v})

    with pytest.raises(ValueError, match="'per_row' has the shape"):
        unknown.get_concrete_function()


def test_mtl_keras_help_documents_the_launcher(capsys):
    from mtl_keras import cli

    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    assert "mtl-keras launch --workers 2" in text and "TF_CONFIG" in text
    assert "TensorflowTrainer" in text


def test_mtl_keras_launch_subcommand(tmp_path, capfd):
    from mtl_keras import cli

    script = tmp_path / "fail.py"
    script.write_text("import os, sys; print('w', os.environ['MTL_KERAS_WORKER']); sys.exit(3)\n")
    assert cli.main(["launch", "--workers", "2", str(script)]) == 3
    assert "exited with 3" in capfd.readouterr().out


def test_seeded_shuffle_and_validation_split():
    import numpy as np

    from mtl_keras.distribute import shuffle

    x = {"a": np.arange(10.0, dtype="float32")}
    y = {"t": np.arange(10.0, dtype="float32")}
    train, val = shuffle._split_last((x, y, None), 0.2)
    np.testing.assert_array_equal(val[0]["a"], [8.0, 9.0])
    assert train[2] is None and len(train[1]["t"]) == 8
    # The same seed gives the same order in every process, another each epoch.
    ds = shuffle.shuffled_dataset(x, y, batch_size=10, seed=3)
    first = next(iter(ds))[0]["a"].numpy()
    again = next(iter(shuffle.shuffled_dataset(x, y, batch_size=10, seed=3)))[0]["a"].numpy()
    np.testing.assert_array_equal(first, again)
    assert sorted(first) == list(range(10))
