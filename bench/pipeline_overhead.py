"""Benchmark: `robot deploy` against running the same commands directly, in one run.

1. Pipeline overhead: a ~2 s deploy of quiet steps (gate green, GitHub statuses, SQLite store).
2. Output volume: one step printing 200,000 lines, paced over ~2 s and flat out; peak RSS;
   every line counted in the store.
Runs on 127.0.0.1 only, every run under a timeout, temp dirs removed; always exits 0.
Usage (repo root): python bench/pipeline_overhead.py [--runs 5] [--lines 200000] [--profile auto]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent

if TYPE_CHECKING:
    from bench.lib.overhead import OverheadResult
    from bench.lib.volume import VolumeResult
    from bench.lib.world import World

VOLUME_RATIO_TARGET = 1.15
# Imports worth naming when start-up is over target (cumulative ms of their first import).
_WATCHED_IMPORTS = (
    "sqlalchemy",
    "sqlalchemy.dialects.postgresql",
    "sqlalchemy.dialects.sqlite",
    "github",
    "jwt",
    "requests",
    "pydantic",
    "yaml",
    "rich.console",
    "bot.checks",
)
RSS_TARGET_MB = 150.0


def main(argv: list[str] | None = None) -> int:
    """Run both scenarios, print the table, the breakdown and (when a target is missed) profiles."""
    args = _parser().parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from bench.lib.bootstrap import reporting, took, use_repo_venv

    use_repo_venv("github", "sqlalchemy")
    from bench.lib.world import NOT_A_USERS_SHELL, World

    began = time.monotonic()
    print(
        "Robot and baseline processes run with a bytecode cache (PYTHONPYCACHEPREFIX in a temp dir) "
        f"and without {', '.join(NOT_A_USERS_SHELL)}, as from a user's shell."
    )
    with tempfile.TemporaryDirectory(prefix="bench-robot-") as tmp:
        world = World(Path(tmp))
        with reporting(world.stop):
            _run(world.start(), args)
    print(took(began))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="measured runs per scenario (default: %(default)s)")
    p.add_argument(
        "--lines", type=int, default=200_000, help="lines of the volume step (default: %(default)s)"
    )
    p.add_argument("--steps", type=int, default=4, help="quiet steps in scenario 1 (default: %(default)s)")
    p.add_argument(
        "--step-seconds",
        type=float,
        default=0.5,
        help="sleep per quiet step (default: %(default)s)",
    )
    p.add_argument("--timeout", type=float, default=90, help="seconds allowed per run (default: %(default)s)")
    p.add_argument(
        "--profile",
        choices=("auto", "always", "never"),
        default="auto",
        help="profile the robot (all threads, cProfile) when a target is missed (default: %(default)s)",
    )
    p.add_argument("--top", type=int, default=25, help="profile entries to print (default: %(default)s)")
    return p


def _run(world: World, args: argparse.Namespace) -> None:
    from bench.lib.overhead import measure_overhead
    from bench.lib.volume import measure_fixed_cpu, measure_volume

    runs = max(1, args.runs)
    print(
        f"Scenario 1: {args.steps} × sleep {args.step_seconds:g} s, {runs} runs (+1 warm-up) …",
        flush=True,
    )
    overhead = measure_overhead(world, runs, args.steps, args.step_seconds, args.timeout)
    volumes = []
    fixed_cpu = measure_fixed_cpu(world, min(runs, 3), args.timeout)
    for paced in (True, False):
        print(
            f"Scenario 2: {args.lines:,} lines, {'paced' if paced else 'flat out'}, "
            f"{runs} runs (+1 warm-up) …",
            flush=True,
        )
        volumes.append(measure_volume(world, runs, args.lines, paced, args.timeout, fixed_cpu))
    print()
    missed = _table(overhead, volumes)
    _breakdown(world, overhead, volumes, args)
    _failures(overhead, volumes)
    _profiles(world, overhead, volumes, missed, args)


def _table(overhead: OverheadResult, volumes: list[VolumeResult]) -> set[str]:
    """Print the summary table; returns which scenarios missed a target."""
    missed: set[str] = set()
    rows: list[tuple[str, ...]] = [("what", "robot", "baseline", "ratio", "target", "met?")]
    o = overhead
    met = o.overhead <= o.allowed
    if not met:
        missed.add("overhead")
    rows.append(
        (
            f"1. deploy {o.steps}×sleep {o.step_seconds:g}s, median wall",
            _s(o.robot_median),
            _s(o.direct_median),
            _x(o.robot_median / o.direct_median),
            "",
            "",
        )
    )
    rows.append(
        (
            "   overhead robot − direct",
            _ms(o.overhead),
            "0 ms",
            f"{o.overhead / o.direct_median:+.1%}",
            f"≤ {o.allowed * 1000:.0f} ms (max 5%, 250 ms)",
            _yes(met),
        )
    )
    for v in volumes:
        ratio = v.robot_wall() / v.direct_wall()
        step_ratio = v.robot_step_wall() / v.direct_wall()
        label = "target" if v.paced else "throughput, info"
        rows.append(
            (
                f"2. {v.lines:,} lines {v.kind}: whole deploy wall",
                _s(v.robot_wall()),
                _s(v.direct_wall()),
                _x(ratio),
                f"≤ {VOLUME_RATIO_TARGET}× ({label})",
                _yes(ratio <= VOLUME_RATIO_TARGET) if v.paced else "info",
            )
        )
        rows.append(
            (
                "   step alone inside robot (start-up excluded)",
                _s(v.robot_step_wall()),
                _s(v.direct_wall()),
                _x(step_ratio),
                f"≤ {VOLUME_RATIO_TARGET}× ({label})",
                _yes(step_ratio <= VOLUME_RATIO_TARGET) if v.paced else "info",
            )
        )
        if v.paced and ratio > VOLUME_RATIO_TARGET:
            missed.add("volume-paced")
        peak = v.robot_peak_mb()
        if not peak <= RSS_TARGET_MB:
            missed.add("volume-paced" if v.paced else "volume-flat")
        rows.append(
            (
                "   peak RSS robot tree | printer alone",
                f"{peak:.0f} MB (robot {v.robot_hwm_mb():.0f})",
                f"{v.printer_peak_mb():.0f} MB",
                "",
                f"≤ {RSS_TARGET_MB:.0f} MB",
                _yes(peak <= RSS_TARGET_MB),
            )
        )
        complete = bool(v.store_lines) and min(v.store_lines) == v.lines and all(v.store_in_order)
        rows.append(
            (
                "   output lines in store log (min over runs)",
                f"{min(v.store_lines, default=0):,}",
                f"{v.lines:,}",
                "in order" if all(v.store_in_order) and v.store_in_order else "NOT in order",
                "all, in order",
                _yes(complete),
            )
        )
    _print_rows(rows)
    return missed


def _breakdown(
    world: World, overhead: OverheadResult, volumes: list[VolumeResult], args: argparse.Namespace
) -> None:
    from bench.lib.breakdown import (
        DEPLOY_IMPORTS,
        github_latencies,
        import_costs,
        median_wall,
        what_if_gc_freeze,
    )

    print("\nWhere scenario 1's overhead goes (medians):")
    bare = median_wall([sys.executable, "-c", "pass"], 5, cwd=world.cwd, env=world.env, timeout=args.timeout)
    imported = median_wall(
        [sys.executable, "-c", DEPLOY_IMPORTS], 5, cwd=world.cwd, env=world.env, timeout=args.timeout
    )
    uncached = median_wall(
        [sys.executable, "-c", DEPLOY_IMPORTS], 5, cwd=world.cwd, env=world.shell_env, timeout=args.timeout
    )
    costs = import_costs(world.cwd, world.env, args.timeout)
    print(f"  interpreter start and exit (python -c pass)          {bare * 1000:7.0f} ms")
    print(f"  + what `robot deploy` imports, and exit              {(imported - bare) * 1000:5.0f} ms")
    print(
        "    (the same without a bytecode cache, as with this shell's PYTHONDONTWRITEBYTECODE=1: "
        f"{(uncached - bare) * 1000:.0f} ms)"
    )
    print(
        f"    -X importtime: bot.cli + wiring + console {costs.total_ms:.0f} ms; own time per package (ms):"
    )
    print("    " + ", ".join(f"{name} {ms:.0f}" for name, ms in costs.per_package_ms[:12]))
    watched = [m for m in _WATCHED_IMPORTS if m in costs.cumulative_ms]
    print(
        "    cumulative (ms, first import only): "
        + ", ".join(f"{m} {costs.cumulative_ms[m]:.0f}" for m in watched)
    )
    print(
        "    bot.config.schema own time (pydantic model building): "
        f"{costs.own_ms.get('bot.config.schema', float('nan')):.0f} ms"
    )
    print("  phases seen on the robot's stdout:")
    for name, seconds in overhead.phases.items():
        print(f"    {name:<74} {seconds * 1000:7.0f} ms")
    requests = overhead.requests_per_deploy
    print(
        f"  GitHub requests per deploy: {min(requests, default=0)}–{max(requests, default=0)} "
        "(the fake's request log)"
    )
    for name, seconds in github_latencies(world, samples=5).items():
        print(f"    {name:<48} {seconds * 1000:6.1f} ms  (same gateway, from the bench process)")
    shipped, frozen = what_if_gc_freeze(world, max(3, args.runs), args.timeout)
    print(
        f"  what-if, 1-step `true` deploy: as shipped {shipped * 1000:.0f} ms, "
        f"with gc.freeze() before exit {frozen * 1000:.0f} ms ({(frozen - shipped) * 1000:+.0f} ms)"
    )
    print("\nOutput volume, robot's own CPU per line (tree CPU − printer CPU − robot's fixed CPU):")
    for v in volumes:
        per_line = v.robot_cpu_per_line_us()
        print(
            f"  {v.kind:<12} {per_line:5.1f} µs/line → {per_line * v.lines / 1e6:.2f} s CPU "
            f"for {v.lines:,} lines; "
            f"robot step wall {v.robot_step_wall():.2f} s vs printer {v.direct_wall():.2f} s"
        )


def _failures(overhead: OverheadResult, volumes: list[VolumeResult]) -> None:
    problems = overhead.failures + [f for v in volumes for f in v.failures]
    if problems:
        print("\nRuns that did not succeed (numbers above include them):")
        for problem in problems[:10]:
            print(f"  - {problem}")


def _profiles(
    world: World,
    overhead: OverheadResult,
    volumes: list[VolumeResult],
    missed: set[str],
    args: argparse.Namespace,
) -> None:
    from bench.lib.profiling import profile_robot
    from bench.lib.world import REPO

    wanted = {"overhead": overhead.config}
    for v in volumes:
        wanted["volume-paced" if v.paced else "volume-flat"] = v.config
    if args.profile == "never":
        return
    chosen = wanted if args.profile == "always" else {k: c for k, c in wanted.items() if k in missed}
    if not chosen:
        print("\nAll targets met; no profile taken (use --profile always to see one).")
        return
    for name, config in chosen.items():
        print(f"\nProfile of one robot run ({name}): cProfile on every thread, inflates many-small-call code")
        print(
            profile_robot(
                ["deploy", REPO, "--config", str(config)],
                cwd=world.cwd,
                env=world.env,
                timeout=args.timeout * 2,
                top=args.top,
            )
        )


def _print_rows(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print(" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("-+-".join("-" * w for w in widths))


def _s(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds:.2f} s"


def _ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.0f} ms"


def _x(ratio: float) -> str:
    return "n/a" if math.isnan(ratio) else f"{ratio:.2f}×"


def _yes(met: bool) -> str:
    return "yes" if met else "NO"


if __name__ == "__main__":
    sys.exit(main())
