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


def pytest_configure(config):
    # xdist's default hands each worker a quarter of the suite up front; with
    # the longest modules first (below) one worker would get all of them.
    # One test at a time instead: whichever worker is free takes the next
    # longest (module-scoped fixtures still run at most once per worker).
    if getattr(config.option, "maxschedchunk", "absent") is None:
        config.option.maxschedchunk = 1


def pytest_collection_modifyitems(config, items):
    # tests/slow_tier.txt lists the tests measured slow, with their seconds
    # (see tests/_support/retier.py): they run only in `make test` (the
    # developer loop's time budget), and the longest modules go first so that
    # the xdist workers finish together. The order is the same in every worker.
    from _support.retier import longest_modules_first, read_tier

    tier = read_tier()
    for item in items:
        if item.nodeid in tier:
            item.add_marker(pytest.mark.slow)
    order = longest_modules_first([item.nodeid for item in items], tier)
    items[:] = [items[i] for i in order]
