"""Scenario 1: a ~2 s deploy of quiet steps through `robot deploy` vs the same commands run directly."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.lib.breakdown import Phases, median_phases, phases
from bench.lib.procs import run_drained
from bench.lib.world import World


@dataclass
class OverheadResult:
    """Wall times per run (seconds), the robot's phases, and what each robot run cost on GitHub."""

    config: Path
    steps: int
    step_seconds: float
    robot: list[float] = field(default_factory=list)
    direct: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    requests_per_deploy: list[int] = field(default_factory=list)
    phase_samples: list[Phases] = field(default_factory=list)

    @property
    def robot_median(self) -> float:
        return statistics.median(self.robot) if self.robot else float("nan")

    @property
    def direct_median(self) -> float:
        return statistics.median(self.direct) if self.direct else float("nan")

    @property
    def overhead(self) -> float:
        return self.robot_median - self.direct_median

    @property
    def allowed(self) -> float:
        """The target: 5 % of the direct run or 250 ms, whichever is larger."""
        return max(0.05 * self.direct_median, 0.250)

    @property
    def phases(self) -> Phases:
        return median_phases(self.phase_samples)


def measure_overhead(
    world: World, runs: int, steps: int, step_seconds: float, timeout: float
) -> OverheadResult:
    """One warm-up pair, then ``runs`` interleaved robot / direct pairs (drift hits both alike)."""
    commands = [["sleep", f"{step_seconds:g}"]] * steps
    result = OverheadResult(world.config("overhead", commands, step_timeout=timeout), steps, step_seconds)
    for attempt in range(runs + 1):
        warm_up = attempt == 0
        before = world.requests_so_far()
        robot = run_drained(
            world.robot_argv(result.config),
            cwd=world.cwd,
            env=world.env,
            timeout=timeout,
            keep_lines=True,
        )
        requests = world.requests_so_far() - before
        started = time.monotonic()
        direct_ok = all(
            run_drained(argv, cwd=world.checkout, env=world.env, timeout=timeout).returncode == 0
            for argv in commands
        )
        direct = time.monotonic() - started
        if robot.returncode != 0:
            result.failures.append(f"robot exit {robot.returncode}: {robot.stderr.strip()[-300:]}")
        if not direct_ok:
            result.failures.append("a direct command failed")
        if warm_up:
            continue
        result.robot.append(robot.wall)
        result.direct.append(direct)
        result.requests_per_deploy.append(requests)
        result.phase_samples.append(phases(robot.stamped, robot.wall, steps, step_seconds))
    return result
