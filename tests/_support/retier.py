"""Regenerates `tests/slow_tier.txt` from a pytest durations report.

`make test-fast` (the developer loop) must stay under 3 minutes on the
2-core machine; tests that take longer than a threshold there run only in
the full suite (`make test`, CI), like the ones marked `@pytest.mark.slow`.

    pytest -q -n auto -m "not slow" --durations=0 --durations-min=0.5 > durations.log
    python tests/_support/retier.py durations.log --threshold 1.5

Ids already in the file are kept (their tests no longer run in the fast
tier, so the new report cannot show them).
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

TIER_FILE = Path(__file__).resolve().parents[1] / "slow_tier.txt"
HEADER = """\
# Tests that run only in the full suite (`make test`, CI), not in `make test-fast`:
# each took >= {threshold} s (setup + call + teardown) in a `-m "not slow"` run on the
# 2-core machine. tests/conftest.py marks them `slow`. Regenerate with
# tests/_support/retier.py (see its docstring). Unknown ids are ignored.
"""
_LINE = re.compile(r"^([0-9.]+)s (?:call|setup|teardown)\s+(\S+)")


def read_tier(path: Path = TIER_FILE) -> set[str]:
    """Node ids listed in the tier file (comments and blank lines skipped)."""
    if not path.exists():
        return set()
    lines = (line.strip() for line in path.read_text().splitlines())
    return {line for line in lines if line and not line.startswith("#")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="pytest output with --durations=0")
    parser.add_argument("--threshold", type=float, default=1.5, help="seconds per test")
    args = parser.parse_args()
    totals: collections.Counter[str] = collections.Counter()
    for line in args.report.read_text().splitlines():
        match = _LINE.match(line)
        if match:
            totals[match.group(2)] += float(match.group(1))
    slow = read_tier() | {node for node, seconds in totals.items() if seconds >= args.threshold}
    TIER_FILE.write_text(HEADER.format(threshold=args.threshold) + "\n".join(sorted(slow)) + "\n")
    print(f"{len(slow)} ids in {TIER_FILE}")


if __name__ == "__main__":
    main()
