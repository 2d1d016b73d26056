"""Builds the tutorial notebooks from their jupytext sources.

Each tutorial is written once, as a percent-format script `tutorials/NN_name.py` (`# %%` cells,
markdown in `# %% [markdown]` cells), paired with `tutorials/NN_name.ipynb`. This script writes the
notebook from the script with stable cell ids (`cell-00`, `cell-01`, ...) and, unless `--no-execute`,
runs it top to bottom so every output in the committed notebook comes from an execution:

    .venv/bin/python tutorials/build.py               # all tutorials, quick setting
    .venv/bin/python tutorials/build.py 05_nlp --full # one tutorial, full setting (slow)

Execution happens in a temporary folder (runs/, saved_models/ and figures land there), with
`MTL_KERAS_QUICK=1` unless `--full`.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile

import jupytext
import nbformat

HERE = pathlib.Path(__file__).resolve().parent
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def sources() -> list[pathlib.Path]:
    """The tutorial scripts, in order (`NN_name.py`)."""
    return sorted(p for p in HERE.glob("[0-9][0-9]_*.py"))


def notebook_from_source(path: pathlib.Path) -> nbformat.NotebookNode:
    """The notebook of one tutorial script, without outputs, with stable cell ids."""
    notebook = jupytext.read(path)
    notebook.metadata["kernelspec"] = dict(KERNELSPEC)
    notebook.metadata["language_info"] = {"name": "python"}
    for index, cell in enumerate(notebook.cells):
        # Ids derived from the position: rebuilding an unchanged tutorial gives an identical file.
        cell["id"] = f"cell-{index:02d}"
        cell.metadata.pop("lines_to_next_cell", None)
    notebook.nbformat, notebook.nbformat_minor = 4, 5
    return notebook


def execute(notebook: nbformat.NotebookNode, *, quick: bool, timeout: int = 1800) -> None:
    """Runs `notebook` in place (outputs filled in) in a temporary working folder."""
    import nbclient  # only needed to execute

    os.environ["MTL_KERAS_QUICK"] = "1" if quick else "0"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("MPLBACKEND", "Agg")
    with tempfile.TemporaryDirectory(prefix="mtl_keras_tutorial_") as workdir:
        client = nbclient.NotebookClient(
            notebook,
            timeout=timeout,
            kernel_name="python3",
            record_timing=False,  # no timestamps: outputs are the only thing that changes
            # TensorFlow's C++ start-up log (oneDNN, CUDA, absl) is written to the
            # process's stderr; only Python-level output belongs in the notebook.
            extra_arguments=["--IPKernelApp.capture_fd_output=False"],
            resources={"metadata": {"path": workdir}},
        )
        client.execute()
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)


def build(path: pathlib.Path, *, run: bool, quick: bool) -> pathlib.Path:
    notebook = notebook_from_source(path)
    if run:
        execute(notebook, quick=quick)
    out = path.with_suffix(".ipynb")
    nbformat.write(notebook, str(out))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "names", nargs="*", help="tutorials to build (e.g. 01_quickstart); all if none"
    )
    parser.add_argument(
        "--no-execute", action="store_true", help="write the notebooks without outputs"
    )
    parser.add_argument(
        "--full", action="store_true", help="execute in the full setting, not the quick one"
    )
    args = parser.parse_args(argv)
    paths = sources()
    if args.names:
        wanted = {name.removesuffix(".py").removesuffix(".ipynb") for name in args.names}
        unknown = wanted - {p.stem for p in paths}
        if unknown:
            parser.error(f"unknown tutorials {sorted(unknown)}; have {[p.stem for p in paths]}")
        paths = [p for p in paths if p.stem in wanted]
    for path in paths:
        out = build(path, run=not args.no_execute, quick=not args.full)
        print("wrote", out.relative_to(HERE.parent), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
