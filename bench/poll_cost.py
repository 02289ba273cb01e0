"""Benchmark: what merge polling costs with many repos, and how fast a merge is announced.

1. Idle poll cycle over --repos repos (after the first cycle recorded every head): requests,
   rate-limit units (target 0), wall time — against the naive unconditional GET of each branch.
2. A cycle in which --merges repos moved, each with a pull request.
3. Per hour at poll_interval 30 s: REST as the robot does it, naive REST, and one GraphQL query
   for all heads (arithmetic from GitHub's documented GraphQL points; the fake has no GraphQL).
4. Merge → announcement latency through `robot run` (its own process) against the fake Slack and
   fake GitHub at poll_interval 2 s and 5 s (target: ≤ poll interval + 1 s).
Everything runs on 127.0.0.1 with GitHub client pacing at its shipped defaults; always exits 0.
Usage (repo root): python bench/poll_cost.py [--repos 100] [--samples 6]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent

if TYPE_CHECKING:
    from bench.lib.poll_cycles import CycleResults
    from bench.lib.poll_latency import LatencyResult
    from bench.lib.poll_world import PollWorld

BUDGET_SECONDS = 170.0  # the whole bench stays under 3 minutes
HOUR_INTERVAL = 30.0  # the shipped poll_interval, for the per-hour arithmetic
REST_LIMIT = 5000  # core units per hour for a token (GitHub's documented primary limit)
GRAPHQL_LIMIT = 5000  # GraphQL points per hour for a user token, a separate budget
# A query of N aliased `repository { ref { target { oid } } }` has no connection (no first/last),
# so GitHub's formula (connection requests / 100, rounded) gives 0, raised to the 1-point minimum.
GRAPHQL_POINTS_PER_QUERY = 1


def main(argv: list[str] | None = None) -> int:
    """Run every part, print the table and the details; a failure is reported, never raised."""
    args = _parser().parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from bench.lib.bootstrap import reporting, took, use_repo_venv

    use_repo_venv("github", "slack_bolt")
    from bench.lib.poll_world import PollWorld

    began = time.monotonic()
    deadline = began + BUDGET_SECONDS
    with tempfile.TemporaryDirectory(prefix="bench-poll-") as tmp:
        world = PollWorld(Path(tmp), args.repos)
        with reporting(world.stop):
            _run(world.start(), args, deadline)
    print(took(began))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repos", type=int, default=100, help="configured repos (default: %(default)s)")
    p.add_argument("--idle-cycles", type=int, default=9, help="idle cycles measured (default: %(default)s)")
    p.add_argument("--merges", type=int, default=5, help="repos moved per merge cycle (default: %(default)s)")
    p.add_argument("--merge-cycles", type=int, default=3, help="merge cycles measured (default: %(default)s)")
    p.add_argument(
        "--intervals",
        type=float,
        nargs="*",
        default=[2.0, 5.0],
        help="poll intervals for the latency part (default: %(default)s)",
    )
    p.add_argument("--samples", type=int, default=6, help="merges timed per interval (default: %(default)s)")
    p.add_argument("--seed", type=int, default=4, help="seed of the merge phases (default: %(default)s)")
    p.add_argument(
        "--what-if",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the first interval with github.seconds_between_requests: 0 (default: on)",
    )
    return p


def _run(world: PollWorld, args: argparse.Namespace, deadline: float) -> None:
    from bench.lib.poll_cycles import measure_cycles
    from bench.lib.poll_latency import measure_latency

    print(
        f"Part 1-2: {args.repos} repos, first cycle + {args.idle_cycles} idle + {args.merge_cycles}×"
        f"{args.merges} merges + naive baseline, in this process …",
        flush=True,
    )
    cycles = measure_cycles(world, args.idle_cycles, args.merges, args.merge_cycles)
    runs: list[tuple[float, dict[str, float] | None]] = [(i, None) for i in args.intervals]
    if args.what_if and args.intervals:
        # The lookups after a moved head are paced by the client; this shows what that pacing costs.
        runs.append((args.intervals[0], {"seconds_between_requests": 0.0}))
    latencies: list[LatencyResult] = []
    for index, (interval, github) in enumerate(runs):
        world.github.reset_window()  # each robot starts with a fresh hourly budget
        # Split what is left of the budget between the remaining runs, by their poll interval.
        weights = [i + 2 for i, _ in runs[index:]]
        share = time.monotonic() + (deadline - time.monotonic()) * weights[0] / sum(weights)
        what = f" ({', '.join(f'{k}: {v:g}' for k, v in github.items())})" if github else ""
        print(f"Part 4: `robot run`, poll_interval {interval:g} s{what}, {args.samples} merges …", flush=True)
        latencies.append(
            measure_latency(world, interval, args.samples, share, args.seed + index, github, args.merges)
        )
    print()
    _table(cycles, latencies)
    _details(cycles, latencies)


# ---- output --------------------------------------------------------------------------------


def _table(c: CycleResults, latencies: list[LatencyResult]) -> None:
    rows: list[tuple[str, ...]] = [("what", "robot", "baseline", "ratio", "target", "met?")]
    n = c.repos
    if c.first is not None:
        rows.append(
            (f"0. first cycle ({n} repos, heads recorded)", f"{c.first.requests} req", "", "", "info", "")
        )
        rows.append(("   units | wall", f"{c.first.units} | {_ms(c.first.wall)}", "", "", "info", ""))
    if c.idle.cycles and c.naive.cycles:
        rows.append(
            (
                "1. idle cycle: requests (median)",
                f"{c.idle.requests:.0f} ({c.idle.not_modified:.0f}×304)",
                f"{c.naive.requests:.0f}",
                _x(c.idle.requests, c.naive.requests),
                "info",
                "",
            )
        )
        met = c.idle.max_units == 0 and (not c.after_merges.cycles or c.after_merges.max_units == 0)
        rows.append(
            (
                "   idle cycle: rate-limit units (worst)",
                f"{c.idle.max_units}",
                f"{c.naive.units:.0f}",
                _x(c.idle.max_units, c.naive.units),
                "0 units",
                _yes(met),
            )
        )
        rows.append(
            (
                "   idle cycle: wall (median)",
                _ms(c.idle.wall),
                _ms(c.naive.wall),
                _x(c.idle.wall, c.naive.wall),
                "info",
                "",
            )
        )
    if c.merges.cycles:
        m = c.merged_per_cycle
        rows.append(
            (
                f"2. cycle with {m} merges: requests",
                f"{c.merges.requests:.0f}",
                f"{c.naive.requests + c.merges.requests - c.idle.requests:.0f}" if c.naive.cycles else "",
                "",
                "info",
                "",
            )
        )
        rows.append(
            (
                "   units (per merge)",
                f"{c.merges.units:.0f} ({c.merges.units / max(1, m):.1f})",
                f"{c.naive.units + c.merges.units:.0f}" if c.naive.cycles else "",
                "",
                "info",
                "",
            )
        )
        rows.append(("   wall (median)", _ms(c.merges.wall), "", "", "info", ""))
    for name, robot, baseline, goal, met_text in _per_hour(c):
        rows.append((name, robot, baseline, "", goal, met_text))
    for lat in latencies:
        target = lat.interval + 1
        label = f"4. merge → announcement, poll {lat.interval:g} s"
        if lat.label:
            label = f"   what-if {lat.label}, poll {lat.interval:g} s"
        if not lat.samples:
            rows.append((label, "no samples", "", "", f"≤ {target:g} s", "?"))
            continue
        rows.append(
            (
                f"{label}: median",
                _s(lat.median),
                "",
                "",
                f"≤ {target:g} s",
                _yes(lat.median <= target),
            )
        )
        rows.append(
            (
                f"   max of {len(lat.samples)}",
                _s(lat.maximum),
                "",
                "",
                f"≤ {target:g} s",
                _yes(lat.maximum <= target),
            )
        )
        if lat.burst:
            # One channel takes one post per channel_interval (1 s, Slack's pace): a floor, not a target.
            rows.append(
                (
                    f"   {len(lat.burst)} merged at once: first | last announced",
                    f"{_s(min(b.posted for b in lat.burst))} | {_s(max(b.posted for b in lat.burst))}",
                    "",
                    "",
                    "info (1 post/s/channel)",
                    "",
                )
            )
    _print_rows(rows)


def _per_hour(c: CycleResults) -> list[tuple[str, str, str, str, str]]:
    """REST (robot) vs naive REST vs one GraphQL query, per hour at the shipped 30 s interval."""
    if not c.idle.cycles or not c.naive.cycles:
        return []
    per_hour = 3600 / HOUR_INTERVAL
    robot_units = c.idle.max_units * per_hour
    naive_units = c.naive.units * per_hour
    graphql_points = GRAPHQL_POINTS_PER_QUERY * per_hour
    fits = robot_units <= REST_LIMIT
    return [
        (
            f"3. per hour idle @ {HOUR_INTERVAL:g} s: REST units",
            f"{robot_units:,.0f} of {REST_LIMIT:,}",
            f"{naive_units:,.0f} of {REST_LIMIT:,}",
            "fits the hourly limit",
            _yes(fits),
        ),
        (
            "   requests per hour",
            f"{c.idle.requests * per_hour:,.0f}",
            f"{c.naive.requests * per_hour:,.0f}",
            "info",
            "",
        ),
        (
            "   one GraphQL query/cycle (computed)",
            f"{graphql_points:,.0f} points of {GRAPHQL_LIMIT:,}",
            f"{per_hour:,.0f} requests",
            "info",
            "",
        ),
    ]


def _details(c: CycleResults, latencies: list[LatencyResult]) -> None:
    print()
    if c.merges.cycles:
        print(
            f"Merge cycles: announcements per cycle {c.announced}; requests per merge "
            f"≈ {(c.merges.requests - c.idle.requests) / max(1, c.merged_per_cycle):.1f} beyond the head "
            f"poll (which ones: see the latency lines below)."
        )
    if c.after_merges.cycles:
        print(f"Idle after merges (new ETags kept): worst {c.after_merges.max_units} units per cycle.")
    if c.idle.cycles and c.naive.cycles:
        per_request = c.idle.wall / max(1.0, c.idle.requests)
        print(
            f"Per head poll on loopback: robot {per_request * 1000:.2f} ms (304), naive "
            f"{c.naive.wall / max(1.0, c.naive.requests) * 1000:.2f} ms (200). Against api.github.com each "
            f"of the {c.repos} sequential polls also pays a round trip (~50–150 ms), i.e. a "
            f"{c.repos * 0.05:.0f}–{c.repos * 0.15:.0f} s cycle, where one GraphQL query pays one."
        )
    print(
        "GraphQL (docs.github.com, 'Rate limits and query limits for the GraphQL API'): 5,000 points/h per "
        "user, separate from REST's 5,000 requests/h; a call costs its connection requests / 100, rounded, "
        "at least 1 point; there are no conditional requests (every poll is a full answer). "
        "REST: a 304 to an authorized conditional request does not count against the primary limit."
    )
    for lat in latencies:
        what = f" ({lat.label})" if lat.label else ""
        head = f"Latency @ {lat.interval:g} s{what}: robot connected {lat.start_seconds:.1f} s after start"
        if lat.samples:
            worst = lat.worst()
            print(
                f"{head}; median phases: wait for the poll {_s(lat.median_of('wait'))}, "
                f"lookups {_s(lat.median_of('lookup'))} ({lat.median_of('lookups'):.0f} requests), "
                f"Slack post {_s(lat.median_of('slack'))}. Worst {worst.repo}: poll {_s(worst.detected)}, "
                f"lookups {_s(worst.looked_up - worst.detected)} ({', '.join(worst.lookups)}), "
                f"post {_s(worst.posted - worst.looked_up)}."
            )
            print("   all (s): " + ", ".join(f"{s.posted:.2f}" for s in lat.samples))
        if lat.burst:
            print(
                f"   {len(lat.burst)} at once (s, detected → posted): "
                + ", ".join(f"{b.detected:.2f} → {b.posted:.2f}" for b in lat.burst)
            )
        if lat.error:
            print(f"{head}; problem: {lat.error}")
    for problem in c.problems:
        print(f"Problem: {problem}")


def _print_rows(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print(" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            print("-+-".join("-" * w for w in widths))


def _s(seconds: float) -> str:
    return f"{seconds:.2f} s"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _x(robot: float, baseline: float) -> str:
    return f"{robot / baseline:.2f}×" if baseline else "—"


def _yes(met: bool) -> str:
    return "yes" if met else "NO"


if __name__ == "__main__":
    sys.exit(main())
