"""Scenario 2: one step printing many lines, through `robot deploy` vs straight into a pipe."""

from __future__ import annotations

import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.lib.procs import Measured, run_measured
from bench.lib.world import World, latest_deploy_log

PRINTER = Path(__file__).resolve().parent / "printer.py"
_LINE = re.compile(r"out (\d{6}) compiling ")
BURSTS = 200
PACED_SECONDS = 2.0
STEP_STARTED = "▶ step 1/".encode()
STEP_DONE = "✓ step 1".encode()


@dataclass
class VolumeResult:
    """Per-run numbers of the robot and of the printer alone, and what reached the store."""

    paced: bool
    lines: int
    config: Path
    robot: list[Measured] = field(default_factory=list)
    direct: list[Measured] = field(default_factory=list)
    store_lines: list[int] = field(default_factory=list)
    store_in_order: list[bool] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    fixed_cpu: float = 0.0  # the robot's own CPU for the same deploy with a 0-line printer

    @property
    def kind(self) -> str:
        return f"paced ~{PACED_SECONDS:g} s" if self.paced else "flat out"

    def robot_wall(self) -> float:
        return statistics.median(m.wall for m in self.robot) if self.robot else float("nan")

    def direct_wall(self) -> float:
        return statistics.median(m.wall for m in self.direct) if self.direct else float("nan")

    def robot_step_wall(self) -> float:
        """The step alone inside the robot: its start line to its ✓ line (no start-up, no GitHub)."""
        spans = [
            m.drained.marks[STEP_DONE] - m.drained.marks[STEP_STARTED]
            for m in self.robot
            if STEP_DONE in m.drained.marks and STEP_STARTED in m.drained.marks
        ]
        return statistics.median(spans) if spans else float("nan")

    def robot_peak_mb(self) -> float:
        return max((m.peak_rss_mb for m in self.robot), default=float("nan"))

    def robot_hwm_mb(self) -> float:
        return max((m.child_hwm_mb for m in self.robot), default=float("nan"))

    def printer_peak_mb(self) -> float:
        return max((m.peak_rss_mb for m in self.direct), default=float("nan"))

    def robot_cpu_per_line_us(self) -> float:
        """The robot's CPU per line: tree CPU minus printer CPU minus the robot's fixed CPU, per line."""
        robot = statistics.median(m.cpu for m in self.robot) if self.robot else float("nan")
        printer = statistics.median(m.cpu for m in self.direct) if self.direct else float("nan")
        return (robot - printer - self.fixed_cpu) / self.lines * 1e6


def printer_argv(lines: int, paced: bool) -> list[str]:
    # Sleeping PACED_SECONDS in total across bursts; writing adds a little on top.
    pause = PACED_SECONDS / BURSTS * 0.9 if paced else 0.0
    return [sys.executable, str(PRINTER), str(lines), str(BURSTS), f"{pause:.4f}"]


def measure_fixed_cpu(world: World, runs: int, timeout: float) -> float:
    """The robot's own CPU for a deploy whose step prints nothing (start-up, GitHub, store)."""
    argv = printer_argv(0, paced=False)
    config = world.config("volume-quiet", [argv], step_timeout=timeout)
    robot = [
        run_measured(world.robot_argv(config), cwd=world.cwd, env=world.env, timeout=timeout).cpu
        for _ in range(runs)
    ]
    printer = [
        run_measured(argv, cwd=world.checkout, env=world.env, timeout=timeout).cpu for _ in range(runs)
    ]
    return statistics.median(robot) - statistics.median(printer)


def measure_volume(
    world: World, runs: int, lines: int, paced: bool, timeout: float, fixed_cpu: float
) -> VolumeResult:
    """One warm-up pair, then ``runs`` interleaved pairs; every robot run's store log is counted."""
    argv = printer_argv(lines, paced)
    name = "volume-paced" if paced else "volume-flat"
    # Every line is counted in the store: the volume bench keeps them all.
    config = world.config(name, [argv], step_timeout=timeout, max_log_lines=lines + 1000)
    result = VolumeResult(paced, lines, config)
    result.fixed_cpu = fixed_cpu
    for attempt in range(runs + 1):
        robot = run_measured(
            world.robot_argv(result.config),
            cwd=world.cwd,
            env=world.env,
            timeout=timeout,
            markers=(STEP_STARTED, STEP_DONE),
        )
        state, log = latest_deploy_log(result.config)
        direct = run_measured(argv, cwd=world.checkout, env=world.env, timeout=timeout)
        if robot.drained.returncode != 0 or state != "succeeded":
            why = robot.drained.stderr.strip()[-300:]
            result.failures.append(f"robot exit {robot.drained.returncode}, deploy {state}: {why}")
        if direct.drained.returncode != 0 or direct.drained.newlines != lines:
            result.failures.append(
                f"printer exit {direct.drained.returncode}, {direct.drained.newlines} lines"
            )
        if attempt == 0:
            continue  # warm-up: page cache, .pyc files, SQLite schema
        numbers = [int(m.group(1)) for m in _LINE.finditer(log)]
        result.store_lines.append(len(numbers))
        result.store_in_order.append(numbers == list(range(lines)))
        result.robot.append(robot)
        result.direct.append(direct)
    return result
