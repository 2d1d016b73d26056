"""Helpers shared by the tests, imported normally: `from _support import toy_model`.

pytest puts `tests/` on `sys.path` (`pythonpath = ["tests"]` in pyproject.toml);
a child process started by a test gets it through `support_env()`.

Modules: `toy` (the two-task toy problem), `builders` (the checks every
builder's model passes), `layers` (the checks every layer passes:
`LayerCase`, `run_layer_checks`), `aggregators` (torchjd reference fixtures).
"""

from __future__ import annotations

import os

from _support.toy import toy_data, toy_model

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def support_env(**extra: str) -> dict[str, str]:
    """`os.environ` plus `tests/` on PYTHONPATH, for test subprocesses."""
    paths = [TESTS_DIR, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), **extra}


__all__ = ["TESTS_DIR", "support_env", "toy_data", "toy_model"]
