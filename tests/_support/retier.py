"""Regenerates `tests/slow_tier.txt` from a pytest durations report.

The file lists every test that took at least a threshold (setup + call +
teardown) on the 2-core machine, with its seconds. `make test-fast` (the
developer loop, < 3 minutes) skips them: `tests/conftest.py` marks them
`slow`, and they run only in the full suite (`make test`, CI).

    pytest -q -n auto --durations=0 --durations-min=0.5 > durations.log
    python tests/_support/retier.py durations.log --threshold 1.5

A report of the fast tier (`-m "not slow"`) updates only the tests it ran:
ids already in the file keep their seconds unless the report measured them.
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

TIER_FILE = Path(__file__).resolve().parents[1] / "slow_tier.txt"
HEADER = """\
# Tests that took >= {threshold} s (setup + call + teardown) on the 2-core machine, with
# their seconds. tests/conftest.py marks them `slow` (so `make test-fast` skips them; they
# run in `make test` and CI). Regenerate with
# tests/_support/retier.py (see its docstring). Unknown ids are ignored.
"""
_LINE = re.compile(r"^([0-9.]+)s (?:call|setup|teardown)\s+(\S+)")


def read_tier(path: Path = TIER_FILE) -> dict[str, float]:
    """Node id -> measured seconds (comments and blank lines skipped)."""
    if not path.exists():
        return {}
    tier = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        seconds, node = line.split(maxsplit=1)
        tier[node] = float(seconds)
    return tier


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
    tier = read_tier()
    tier.update({node: seconds for node, seconds in totals.items() if seconds >= args.threshold})
    lines = [f"{tier[node]:.1f} {node}" for node in sorted(tier)]
    TIER_FILE.write_text(HEADER.format(threshold=args.threshold) + "\n".join(lines) + "\n")
    print(f"{len(tier)} ids in {TIER_FILE}")


if __name__ == "__main__":
    main()
