"""What the replicas bench reads from the steps' start/end file: overlaps, double runs, latencies."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Mark:
    """One line the recording step wrote."""

    kind: str  # "start" or "end"
    deploy: int
    where: str  # repo:env
    at: float  # unix time
    robot_pid: int


@dataclass(frozen=True)
class Run:
    """One run of a deploy's step: its start, and its end (None: it never wrote one)."""

    deploy: int
    where: str
    start: float
    end: float | None
    robot_pid: int


def read_marks(path: Path) -> list[Mark]:
    marks = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[0] in ("start", "end"):
            marks.append(Mark(parts[0], int(parts[1]), parts[2], float(parts[3]), int(parts[4])))
    return marks


def runs_of(marks: Sequence[Mark]) -> list[Run]:
    """Each start paired with the next end of the same deploy (the file is in time order)."""
    runs: list[Run] = []
    open_runs: dict[int, list[int]] = defaultdict(list)
    for mark in marks:
        if mark.kind == "start":
            open_runs[mark.deploy].append(len(runs))
            runs.append(Run(mark.deploy, mark.where, mark.at, None, mark.robot_pid))
        elif open_runs[mark.deploy]:
            index = open_runs[mark.deploy].pop(0)
            run = runs[index]
            runs[index] = Run(run.deploy, run.where, run.start, mark.at, run.robot_pid)
    return runs


def overlaps(runs: Sequence[Run], ended: Mapping[int, float]) -> list[tuple[Run, Run]]:
    """Pairs of runs in one environment whose [start, end) intersect.

    A run without an end line (its step was killed) lasts until ``ended[deploy]``, when the store
    recorded the deploy's end, or forever when the store has none.
    """
    found: list[tuple[Run, Run]] = []
    by_env: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_env[run.where].append(run)
    for env_runs in by_env.values():
        ordered = sorted(env_runs, key=lambda r: r.start)
        for index, first in enumerate(ordered):
            first_end = first.end if first.end is not None else ended.get(first.deploy, float("inf"))
            found.extend((first, later) for later in ordered[index + 1 :] if later.start < first_end)
    return found


def run_twice(runs: Sequence[Run], interrupted: set[int]) -> list[int]:
    """Deploys whose step started twice, unless the store says the first run was interrupted."""
    starts: dict[int, int] = defaultdict(int)
    for run in runs:
        starts[run.deploy] += 1
    return sorted(d for d, n in starts.items() if n > 1 and d not in interrupted)


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (p99 of 60 samples is the largest)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = min(len(ordered), max(1, math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]
