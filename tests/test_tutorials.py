"""Tutorial notebooks: built from their jupytext sources, executed top to bottom (quick setting)."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

TUTORIAL_DIR = pathlib.Path(__file__).parents[1] / "tutorials"
TUTORIALS = sorted(TUTORIAL_DIR.glob("*.ipynb"))


def _build_module():
    spec = importlib.util.spec_from_file_location("tutorials_build", TUTORIAL_DIR / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_notebook_has_a_source_and_matches_it():
    """The committed notebooks are what `tutorials/build.py` makes of the sources (ids included)."""
    build = _build_module()
    sources = build.sources()
    assert [p.stem for p in sources] == [p.stem for p in TUTORIALS]
    for source in sources:
        expected = build.notebook_from_source(source)
        committed = nbformat_read(source.with_suffix(".ipynb"))
        assert [(c.cell_type, c.id, c.source) for c in committed.cells] == [
            (c.cell_type, c.id, c.source) for c in expected.cells
        ], f"{source.name}: rebuild with `python tutorials/build.py {source.stem}`"


def test_rebuilding_gives_identical_notebooks():
    """Two builds of a source write byte-identical notebooks (no random ids, no timestamps)."""
    nbformat = pytest.importorskip("nbformat")
    build = _build_module()
    for source in build.sources():
        first, second = (nbformat.writes(build.notebook_from_source(source)) for _ in range(2))
        assert first == second, source.name


def test_committed_notebooks_were_executed():
    """Outputs come from a run (`make tutorials`), not pasted: every code cell
    has an execution count, in order, and no cell ended in an error."""
    for path in TUTORIALS:
        cells = [c for c in nbformat_read(path).cells if c.cell_type == "code"]
        counts = [c.get("execution_count") for c in cells]
        assert None not in counts, f"{path.name}: run `python tutorials/build.py {path.stem}`"
        assert counts == sorted(counts), path.name
        errors = [o for c in cells for o in c.outputs if o.get("output_type") == "error"]
        assert not errors, f"{path.name}: {errors[0].get('ename')}"


def nbformat_read(path):
    nbformat = pytest.importorskip("nbformat")
    return nbformat.read(str(path), as_version=4)


@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    # The kernel inherits the environment: quick setting, quiet TensorFlow,
    # outputs (runs/, saved_models/) in a temporary folder.
    monkeypatch.setenv("MTL_KERAS_QUICK", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(str(path), as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors, errors
