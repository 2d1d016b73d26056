"""Shared by the `_build_*.py` scripts that write tutorial notebooks (without outputs).

    from _notebook import NotebookSource
    nb = NotebookSource()
    nb.md("# Title")
    nb.code("print(1)")
    nbformat.write(nb.build(), "tutorial.ipynb")
"""

from __future__ import annotations

from typing import Callable

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


class NotebookSource:
    """Markdown and code cells in order, turned into a Python 3 notebook."""

    def __init__(self) -> None:
        self.cells: list[tuple[str, str]] = []

    def md(self, text: str) -> None:
        self.cells.append(("md", text.strip("\n")))

    def code(self, text: str) -> None:
        self.cells.append(("code", text.strip("\n")))

    def build(self, fill_markdown: Callable[[str], str] = str) -> nbformat.NotebookNode:
        """The notebook; `fill_markdown` may rewrite markdown cells (placeholders)."""
        cells = [
            new_markdown_cell(fill_markdown(text)) if kind == "md" else new_code_cell(text)
            for kind, text in self.cells
        ]
        nb = new_notebook(cells=cells)
        nb.metadata["kernelspec"] = {
            "display_name": "Python 3",
            "language": "python",
            "name": "python3",
        }
        nb.metadata["language_info"] = {"name": "python"}
        return nb
