"""plots: matplotlib views draw without error (Agg backend)."""

from __future__ import annotations

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from mtl_keras import plots  # noqa: E402


def test_plots_draw():
    import matplotlib.pyplot as plt

    ax = plots.plot_task_weights({"a_weight": [1.0, 0.8], "b_weight": [1.0, 1.2], "loss": [1, 1]})
    assert [line.get_label() for line in ax.get_lines()] == ["a", "b"]
    ax = plots.plot_gradient_similarity(np.array([[1.0, -0.5], [-0.5, 1.0]]), ["a", "b"])
    assert len(ax.texts) == 4
    ax = plots.plot_gate_utilisation({"a": np.array([0.7, 0.3]), "b": np.array([0.2, 0.8])})
    assert len(ax.patches) == 4
    plt.close("all")
    with pytest.raises(ValueError):
        plots.plot_task_weights({"loss": [1.0]})
