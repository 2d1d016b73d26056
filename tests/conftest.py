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


def pytest_collection_modifyitems(config, items):
    # The developer loop's time budget: tests listed in tests/slow_tier.txt
    # (measured slow, see tests/_support/retier.py) run only in `make test`.
    from _support.retier import read_tier

    slow = read_tier()
    for item in items:
        if item.nodeid in slow:
            item.add_marker(pytest.mark.slow)
