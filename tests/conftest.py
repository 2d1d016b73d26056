"""Session-wide fixtures. Shared helpers live in `tests/_support` (imported
as `_support`: pytest's `pythonpath = ["tests"]`), not here."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest
from _support import toy_data


@pytest.fixture
def data():
    return toy_data()
