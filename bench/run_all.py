"""`make bench`: run every benchmark in bench/ and print their rows as one table.

Each benchmark prints a table whose rows are `what | robot | baseline | ratio | target | met?`;
this runs them one after another (so they do not share the 2 cores), keeps those rows, and
prints them together under the machine they ran on. Always exits 0; each script is bounded.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHES = (
    ("pipeline", ["bench/pipeline_overhead.py", "--profile", "never"]),
    ("slack", ["bench/ack_latency.py"]),
    ("home", ["bench/home.py"]),
    ("poller", ["bench/poll_cost.py"]),
    ("startup", ["bench/startup.py"]),
    ("big log", ["bench/big_log.py"]),
    ("metrics", ["bench/metrics_cost.py"]),
    ("shutdown", ["bench/shutdown.py"]),
    ("replicas", ["bench/replicas.py"]),
    ("change list", ["bench/change_list.py"]),
    ("dora stats", ["bench/stats.py"]),
)
TIMEOUT_SECONDS = 600
HEADER = ("bench", "what", "robot", "baseline", "ratio", "target", "met?")


def main() -> None:
    rows: list[tuple[str, ...]] = []
    for name, argv in BENCHES:
        print(f"running {argv[0]} …", flush=True)
        try:
            done = subprocess.run(
                [sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_SECONDS
            )
            output = done.stdout
        except subprocess.TimeoutExpired:
            rows.append((name, f"{argv[0]} did not finish in {TIMEOUT_SECONDS} s", "", "", "", "", "NO"))
            continue
        found = [(name, *cells) for cells in _table_rows(output)]
        if not found:
            tail = (done.stderr or output).strip().splitlines()[-1:] or ["no output"]
            found = [(name, f"{argv[0]} printed no table: {tail[0]}", "", "", "", "", "NO")]
        rows.extend(found)
    print()
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}")
    _print(rows)


def _table_rows(output: str) -> list[tuple[str, ...]]:
    """The data rows of every `a | b | c | d | e | f` table in a benchmark's output."""
    rows = []
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) == 7:  # a `what` that itself holds a `|` (e.g. "robot tree | printer alone")
            cells = [f"{cells[0]} / {cells[1]}", *cells[2:]]
        if len(cells) != 6 or cells[0] in ("", "what") or set(line) <= set("-+| "):
            continue
        rows.append(tuple(cells))
    return rows


def _print(rows: list[tuple[str, ...]]) -> None:
    table = [HEADER, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADER))]
    for index, row in enumerate(table):
        print(" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            print("-+-".join("-" * w for w in widths))


if __name__ == "__main__":
    main()
