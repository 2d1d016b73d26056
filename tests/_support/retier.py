"""Regenerates `tests/slow_tier.txt` from a pytest durations report.

The file lists every test that took at least a threshold (setup + call +
teardown) on the 2-core machine, with its seconds. `tests/conftest.py` uses
it twice:

- `make test-fast` (the developer loop, < 3 minutes) skips those tests: they
  are marked `slow` and run only in the full suite (`make test`, CI);
- the full suite starts with the modules that take longest, so the two
  xdist workers do not end with one of them alone on a long test.

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
# run in `make test` and CI) and runs the longest modules first. Regenerate with
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


def longest_modules_first(node_ids: list[str], tier: dict[str, float]) -> list[int]:
    """Positions of `node_ids`, reordered: modules by their listed seconds,
    longest first; tests keep their order within a module (so its
    module-scoped fixtures are set up once per worker), and modules with no
    listed test keep theirs, after the others.

    >>> longest_modules_first(["a.py::x", "b.py::y", "b.py::z", "c.py::w"], {"b.py::z": 9.0})
    [1, 2, 0, 3]
    """
    totals: collections.Counter[str] = collections.Counter()
    for node in node_ids:
        totals[node.split("::")[0]] += tier.get(node, 0.0)
    return sorted(range(len(node_ids)), key=lambda i: -totals[node_ids[i].split("::")[0]])


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
