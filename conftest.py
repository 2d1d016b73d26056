"""Names shared by the docstring examples (`pytest --doctest-modules`).

Every doctest sees `np`, `keras` and `mk`; a doctest that uses `model` without
defining it also gets a fresh, compiled (untrained) two-task model over two
numeric features, with 16 rows of features `x` and labels `y`:

    model = mk.builders.shared_bottom({"a": Input((1,)), "b": Input((1,))},
                                      [Binary("click"), Regression("dwell")])
    x = {"a": ..., "b": ...}; y = {"click": ..., "dwell": ...}
"""

from __future__ import annotations

import os
import pathlib
import re
import sys

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

_TESTS = pathlib.Path(__file__).parent / "tests"


def pytest_ignore_collect(collection_path, config):
    """`--doctest-modules` would import every module under tests/: the helper
    and worker scripts there (`mw_worker.py`, `fixtures/generate_torchjd.py`,
    ...) are not test modules and must not be imported by collection."""
    path = pathlib.Path(collection_path)
    if path.suffix == ".py" and _TESTS in path.parents:
        if not path.name.startswith("test_") and path.name != "conftest.py":
            return True
    return None


def _uses_model(item) -> bool:
    source = "".join(e.source for e in item.dtest.examples)
    return "model" in source and not re.search(r"^model\s*=", source, re.M)


def _toy():
    import keras
    import numpy as np

    import mtl_keras as mk

    keras.utils.set_random_seed(0)
    inputs = {k: keras.Input((1,), name=k) for k in ("a", "b")}
    tasks = [mk.Binary("click"), mk.Regression("dwell")]
    model = mk.builders.shared_bottom(inputs, tasks, trunk_units=(8,), tower_units=(4,))
    model.compile("adam")
    rng = np.random.default_rng(0)
    x = {k: rng.normal(size=16).astype("float32") for k in ("a", "b")}
    y = {"click": (x["a"] > 0).astype("float32"), "dwell": x["b"]}
    return model, x, y


@pytest.fixture(autouse=True)
def _doctest_names(request):
    """Fills `doctest_namespace` for docstring examples only."""
    if not hasattr(request.node, "dtest"):
        yield
        return
    import keras
    import numpy as np

    import mtl_keras as mk

    namespace = request.getfixturevalue("doctest_namespace")
    namespace.update(np=np, keras=keras, mk=mk)
    if _uses_model(request.node):
        namespace["model"], namespace["x"], namespace["y"] = _toy()
    yield
    for name in ("model", "x", "y"):
        namespace.pop(name, None)
    if "matplotlib.pyplot" in sys.modules:  # figures drawn by plotting examples
        sys.modules["matplotlib.pyplot"].close("all")
