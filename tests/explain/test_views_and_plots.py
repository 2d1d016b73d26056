"""Importance heat map, TensorBoard summaries, gate/attention/fusion views."""

from __future__ import annotations

import glob

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import mtl_keras as mk
from mtl_keras import compress, explain


def _table():
    return pd.DataFrame(
        {"a": [0.7, 0.2, 0.1], "b": [0.1, 0.3, 0.6]},
        index=pd.Index(["f1", "f2", "f3"], name="feature"),
    )


def test_plot_importance_heat_map_sorted():
    import matplotlib

    matplotlib.use("Agg")
    ax = explain.plot_importance(_table(), top=2)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["f1", "f3"]  # sorted by max over tasks, top 2
    np.testing.assert_allclose(ax.images[0].get_array(), [[0.7, 0.1], [0.1, 0.6]])


def test_log_importance_writes_image_text_and_scalars(tmp_path):
    explain.log_importance(_table(), str(tmp_path), step=3)
    kinds = {}
    for path in glob.glob(str(tmp_path / "events*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                kinds[value.tag] = (event.step, value.metadata.plugin_data.plugin_name)
    assert kinds["feature_importance/heatmap"] == (3, "images")
    assert kinds["feature_importance/table"] == (3, "text")
    assert any(k.startswith("feature_importance/a/f1") for k in kinds)
    plugins = {p for _, p in kinds.values()}
    assert {"images", "text", "scalars"} <= plugins


def _block_matplotlib(monkeypatch):
    """Makes `import matplotlib` fail as if it were not installed."""
    import sys

    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # None: ImportError on import
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)


def test_log_importance_works_without_matplotlib(tmp_path, monkeypatch):
    from mtl_keras.explain.tensorboard import heatmap_pixels

    _block_matplotlib(monkeypatch)
    with pytest.raises(ImportError, match=r"mtl_keras\[plots\]"):
        explain.plot_importance(_table())
    explain.log_importance(_table(), str(tmp_path), step=1)
    images, texts = {}, {}
    for path in glob.glob(str(tmp_path / "events*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag.endswith("/heatmap"):
                    # image summaries store [width, height, png...] as strings
                    png = tf.make_ndarray(value.tensor)[2]
                    images[value.tag] = tf.io.decode_png(png).numpy()
                if value.tag.endswith("/table"):
                    texts[value.tag] = tf.make_ndarray(value.tensor).item().decode()
    pixels = images["feature_importance/heatmap"]
    # 3 features x 2 tasks, 16-pixel cells; the numpy rendering, exactly.
    assert pixels.shape == (48, 32, 3)
    np.testing.assert_array_equal(pixels, heatmap_pixels(_table()))
    # f1/a (0.7, the maximum) is yellow, f1/b (0.1, the minimum) dark.
    assert pixels[0, 0].tolist() == [253, 231, 37] and pixels[0, 16].tolist() == [68, 1, 84]
    rows = [line.split("|")[1].strip() for line in texts["feature_importance/table"].splitlines()]
    assert rows[2:] == ["f1", "f3", "f2"]  # the image's row order


def test_metric_drop_table_signs():
    results = {
        0.0: {"a_auc": 0.9, "b_loss": 0.5},
        0.5: {"a_auc": 0.88, "b_loss": 0.55},
    }
    table = compress.metric_drop(results, ["a_auc", "b_loss"])
    assert table.loc[0.0].tolist() == [0.0, 0.0]
    np.testing.assert_allclose(table.loc[0.5].to_numpy(), [0.02, 0.05])
    with pytest.raises(ValueError, match="dense run"):
        compress.metric_drop({0.5: results[0.5]}, ["a_auc"])


def test_task_views_gates_attention_and_fusion_hook():
    keras.utils.set_random_seed(0)
    tasks = [mk.Binary("a"), mk.Binary("b")]
    mmoe = mk.builders.mmoe(
        keras.Input((4,)), tasks, num_experts=3, expert_units=(4,), tower_units=()
    )
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    views = explain.task_views(mmoe, x)
    assert set(views["gates"]) == {"a", "b"}
    np.testing.assert_allclose(views["gates"]["a"].sum(), 1.0, atol=1e-5)
    assert "attention" not in views

    mtan = mk.builders.mtan(keras.Input((8, 8, 2), name="image"), tasks, filters=(4, 8))
    images = np.random.default_rng(0).normal(size=(4, 8, 8, 2)).astype("float32")
    attention = explain.task_attention(mtan, images)
    assert set(attention) == {"a", "b"} and len(attention["a"]) == 2
    assert all(0.0 < v < 1.0 for v in attention["a"])
    assert explain.task_views(mtan, images)["attention"] == attention

    explain.register_view("fusion", lambda model, x: {"a": {"image": 1.0}})
    try:
        assert explain.fusion_weights(mmoe, x) == {"a": {"image": 1.0}}
        assert explain.task_views(mmoe, x)["fusion"] == {"a": {"image": 1.0}}
    finally:
        explain.views._VIEWS.pop("fusion")


def test_importance_callback_logs_each_epoch(tmp_path):
    from explain_helpers import data, model

    x, y = data(256)
    m = model(x)
    m.compile("adam", weighting="static")
    rows = {k: v[:16] for k, v in x.items()}
    callback = explain.ImportanceTensorBoard(rows, str(tmp_path), every=2, steps=8)
    m.fit(x, y, batch_size=64, epochs=3, verbose=0, callbacks=[callback])
    assert sorted(callback.tables) == [1, 2]  # every 2nd epoch and the last
    assert set(callback.tables[2].columns) == {"alpha", "beta"}
    np.testing.assert_allclose(callback.tables[2].sum().to_numpy(), 1.0)
    assert glob.glob(str(tmp_path / "events*"))
