"""Benchmark: `robot run` in Slack — slash-command ack latency and Slack writes per deploy.

1. Ack latency: COMMANDS slash commands (/deploy of distinct SHA/env, /deploy-status, help),
   BATCH at a time, through the fake Slack's Socket Mode WebSocket, while 4 deploys stream
   output; the same commands to a bare Bolt app that only acks, batches alternating, same run.
   Both apps run as their own processes (`python -m bot.cli run`, bench/lib/bare_app.py); the fakes
   run in this process. Latency = the fake's send of the envelope → the fake's receipt of the ack.
2. Slack writes: one deploy printing LINES lines, the fake limiting writes to 1/s per channel,
   the robot's default pacing; root + progress writes, their rate, and 429s served.
3. Click acks: CLICKS clicks each of the Deploy, Roll back, Approve and Reject buttons (kinds
   mixed, BATCH at a time) while 4 deploys stream, batches alternating with a bare Bolt app acking
   the same clicks: the Deploy button is judged against the bare app, the others against it.
Runs on 127.0.0.1 only, every wait under a timeout, temp dirs removed; always exits 0.
Usage (repo root): python bench/ack_latency.py [--commands 200] [--batch 50] [--clicks 100]
                  [--lines 200000] [--only acks|writes|clicks]
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
    from bench.lib.acks import AckResult
    from bench.lib.clicks import ClickResult
    from bench.lib.slack_writes import WritesResult

P99_RATIO_TARGET = 1.5
ACK_DEADLINE = 3.0
WRITES_PER_2S_TARGET = 1.0
MESSAGE_INTERVAL = 2.0
# Roll back / Approve / Reject p99 against the Deploy button's, same run: "as the Deploy
# button", with room for this machine's noise.
CLICK_RATIO_TARGET = 1.25


def main(argv: list[str] | None = None) -> int:
    """Run both scenarios and print the table; report, never fail."""
    args = _parser().parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from bench.lib.bootstrap import reporting, took, use_repo_venv

    use_repo_venv("slack_bolt", "sqlalchemy")
    began = time.monotonic()
    acks: AckResult | None = None
    writes: WritesResult | None = None
    clicks: ClickResult | None = None
    wanted = {args.only} if args.only else {"acks", "writes", "clicks"}
    with tempfile.TemporaryDirectory(prefix="bench-slack-") as tmp:
        root = Path(tmp)
        with reporting(lambda: _clean_up(root)):
            acks = _scenario_acks(root, args) if "acks" in wanted else None
            writes = _scenario_writes(root, args) if "writes" in wanted else None
            clicks = _scenario_clicks(root, args) if "clicks" in wanted else None
    _report(acks, writes, clicks)
    print(took(began))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--commands", type=int, default=200, help="measured commands per app (default: %(default)s)"
    )
    p.add_argument("--batch", type=int, default=50, help="commands in flight at once (default: %(default)s)")
    p.add_argument(
        "--clicks",
        type=int,
        default=100,
        help="clicks of each button in scenario 3 (default: %(default)s)",
    )
    p.add_argument(
        "--stream-burst",
        type=int,
        default=10,
        help="lines each of the 4 streams prints every 10 ms (default: %(default)s)",
    )
    p.add_argument(
        "--lines", type=int, default=200_000, help="lines of the scenario-2 step (default: %(default)s)"
    )
    p.add_argument("--only", choices=("acks", "writes", "clicks"), help="run just this scenario")
    return p


def _scenario_acks(root: Path, args: argparse.Namespace) -> AckResult:
    from bench.lib.acks import measure_acks
    from tests.fakes.github import FakeGitHub
    from tests.support.harness import TOKEN

    print(
        "Process arrangement: the robot (`python -m bot.cli run`) and the bare app (bench/lib/bare_app.py) "
        "each run as their own process; the fake Slacks and fake GitHub run in this one."
    )
    print(
        f"Scenario 1: {args.commands} commands per app, {args.batch} at a time, 4 deploys streaming "
        f"~{args.stream_burst * 100} lines/s each …",
        flush=True,
    )
    github = FakeGitHub(tokens={TOKEN: "deploy-robot"}).start()
    try:
        return measure_acks(root / "acks", github, args.commands, max(1, args.batch), args.stream_burst)
    finally:
        github.stop()


def _scenario_writes(root: Path, args: argparse.Namespace) -> WritesResult:
    from bench.lib.slack_writes import measure_writes
    from tests.fakes.github import FakeGitHub
    from tests.support.harness import TOKEN

    print(
        f"Scenario 2: one deploy printing {args.lines:,} lines, fake Slack at 1 write/s per channel …",
        flush=True,
    )
    github = FakeGitHub(tokens={TOKEN: "deploy-robot"}).start()
    try:
        return measure_writes(root / "writes", github, args.lines)
    finally:
        github.stop()


def _scenario_clicks(root: Path, args: argparse.Namespace) -> ClickResult:
    from bench.lib.clicks import measure_clicks
    from tests.fakes.github import FakeGitHub
    from tests.support.harness import TOKEN

    print(
        f"Scenario 3: {args.clicks} clicks each of Deploy, Roll back, Approve and Reject, {args.batch} "
        f"at a time, robot and bare app, 4 deploys streaming ~{args.stream_burst * 100} lines/s each …",
        flush=True,
    )
    github = FakeGitHub(tokens={TOKEN: "deploy-robot"}).start()
    try:
        return measure_clicks(root / "clicks", github, args.clicks, max(1, args.batch), args.stream_burst)
    finally:
        github.stop()


def _clean_up(root: Path) -> None:
    from bench.lib.app_process import kill_leftovers

    stray = kill_leftovers(root)
    if stray:
        print(f"bench: killed {len(stray)} stray step process(es) left under {root}: {stray}")


def _fmt(value: float, unit: str = "", digits: int = 1) -> str:
    return "—" if math.isnan(value) else f"{value:.{digits}f}{unit}"


def _report(acks: AckResult | None, writes: WritesResult | None, clicks: ClickResult | None = None) -> None:
    rows: list[tuple[str, str, str, str, str, str]] = []
    if acks is not None:
        rows.extend(_ack_rows(acks))
    if writes is not None:
        rows.extend(_write_rows(writes))
    if clicks is not None:
        rows.extend(_click_rows(clicks))
    if not rows:
        return
    header = ("what", "robot", "baseline", "ratio", "target", "met?")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print()
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print(" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print()
    if acks is not None:
        _ack_notes(acks)
    if writes is not None:
        _write_notes(writes)
    if clicks is not None:
        for note in clicks.notes:
            print(f"Click scenario: {note}")


def _ack_rows(acks: AckResult) -> list[tuple[str, str, str, str, str, str]]:
    from bench.lib.acks import latencies, percentile

    robot, bare = latencies(acks.robot), latencies(acks.bare)
    if not robot or not bare:
        return [("ack latency", "no acks", "", "", "", "no")]
    rows = []
    for label, q in (("ack p50 (ms)", 50.0), ("ack p99 (ms)", 99.0), ("ack max (ms)", 100.0)):
        r, b = percentile(robot, q) * 1000, percentile(bare, q) * 1000
        target, met = "", ""
        if q == 99.0:
            target, met = f"≤ {P99_RATIO_TARGET:g}× bare", "yes" if r <= P99_RATIO_TARGET * b else "NO"
        if q == 100.0:
            every = len(robot) == len(acks.robot) and max(robot) < ACK_DEADLINE
            target, met = f"every ack < {ACK_DEADLINE * 1000:.0f}", "yes" if every else "NO"
        rows.append((label, f"{r:.1f}", f"{b:.1f}", f"{r / b:.2f}×", target, met))
    rows.append(
        (
            "acks received",
            f"{len(robot)}/{len(acks.robot)}",
            f"{len(bare)}/{len(acks.bare)}",
            "",
            "all",
            "yes" if len(robot) == len(acks.robot) else "NO",
        )
    )
    return rows


def _click_rows(clicks: ClickResult) -> list[tuple[str, str, str, str, str, str]]:
    """p50 / p99 / max of each button: the Deploy button against the bare app's acks of it, the
    Roll back, Approve and Reject buttons against the Deploy button (same run, same load)."""
    from bench.lib.acks import latencies, percentile
    from bench.lib.clicks import DEPLOY_KIND, KINDS

    deploy = latencies(clicks.robot[DEPLOY_KIND])
    bare = latencies(clicks.bare[DEPLOY_KIND])
    rows = []
    for kind in KINDS:
        got = latencies(clicks.robot[kind])
        baseline, against = (bare, "bare") if kind == DEPLOY_KIND else (deploy, "Deploy")
        if not got or not baseline:
            rows.append((f"{kind} button click acks", "no acks", "", "", "", "NO"))
            continue
        for label, q in (("p50", 50.0), ("p99", 99.0), ("max", 100.0)):
            r, b = percentile(got, q) * 1000, percentile(baseline, q) * 1000
            target, met = "", ""
            if q == 99.0 and kind != DEPLOY_KIND:
                target = f"≤ {CLICK_RATIO_TARGET:g}× Deploy button"
                met = "yes" if r <= CLICK_RATIO_TARGET * b else "NO"
            if q == 100.0:
                target = f"every ack < {ACK_DEADLINE * 1000:.0f}"
                met = "yes" if max(got) < ACK_DEADLINE and len(got) == len(clicks.robot[kind]) else "NO"
            rows.append(
                (
                    f"{kind} button click ack {label} (ms)",
                    f"{r:.1f}",
                    f"{b:.1f} {against}",
                    f"{r / b:.2f}×",
                    target,
                    met,
                )
            )
    robot_acked = sum(len(latencies(s)) for s in clicks.robot.values())
    bare_acked = sum(len(latencies(s)) for s in clicks.bare.values())
    sent = sum(len(s) for s in clicks.robot.values())
    rows.append(
        (
            "clicks acked",
            f"{robot_acked}/{sent}",
            f"{bare_acked}/{sum(len(s) for s in clicks.bare.values())} bare",
            "",
            "all",
            "yes" if robot_acked == sent else "NO",
        )
    )
    return rows


def _write_rows(w: WritesResult) -> list[tuple[str, str, str, str, str, str]]:
    per_2s = w.per_message_per_2s
    gap = min(w.root.min_gap, w.progress.min_gap)
    return [
        (f"Slack write calls, {w.lines:,}-line deploy", str(w.writes), "—", "", "", ""),
        (
            "  root / progress (accepted)",
            f"{len(w.root.times)} / {len(w.progress.times)} ({w.accepted})",
            "—",
            "",
            "",
            "",
        ),
        ("  deploy duration (s)", _fmt(w.duration), "—", "", "", ""),
        (
            "  writes per message per 2 s",
            _fmt(per_2s, digits=2),
            "—",
            "",
            f"≤ {WRITES_PER_2S_TARGET:g}",
            "yes" if per_2s <= WRITES_PER_2S_TARGET else "NO",
        ),
        (
            "  min gap, writes to one message (s)",
            _fmt(gap, digits=2),
            "—",
            "",
            f"≥ {MESSAGE_INTERVAL:g}",
            "yes" if gap >= MESSAGE_INTERVAL or math.isnan(gap) else "NO",
        ),
        ("  429s served by the fake", str(w.served_429), "—", "", "0", "yes" if w.served_429 == 0 else "NO"),
    ]


def _ack_notes(acks: AckResult) -> None:
    from bench.lib.acks import describe, percentile

    print(f"Ack scenario: robot {describe(acks.robot)}; bare {describe(acks.bare)}.")
    answers = [s.answered_in for s in acks.robot if s.answered_in is not None]
    if answers:
        print(
            f"  the robot's real answers (in the ack, or on the response_url after ⏳): {len(answers)}/"
            f"{len(acks.robot)}, p50 {percentile(answers, 50) * 1000:.0f} ms, "
            f"p99 {percentile(answers, 99) * 1000:.0f} ms"
        )
    robot_ms = acks.robot_cpu / max(1, len(acks.robot)) * 1000
    bare_ms = acks.bare_cpu / max(1, len(acks.bare)) * 1000
    print(
        f"  CPU per command while its batch was in flight: robot {robot_ms:.2f} ms, bare {bare_ms:.2f} ms "
        f"(idle: robot {acks.robot_idle_cpu * 1000:.0f} ms/s, bare {acks.bare_idle_cpu * 1000:.0f} ms/s); "
        f"one GIL serves a batch of {acks.batch} in ≥ {robot_ms * acks.batch:.0f} ms vs "
        f"{bare_ms * acks.batch:.0f} ms."
    )
    print(
        f"  {acks.deploys_created} deploys queued by measured commands; {acks.deploys_run} reached GitHub "
        f"(2 spare workers); the 4 streams stored {acks.stream_lines:,} lines "
        f"(target rate ~{acks.stream_lines_per_second:.0f} lines/s each)."
    )
    for note in acks.notes:
        print(f"  {note}")


def _write_notes(w: WritesResult) -> None:
    print(
        f"Writes scenario: deploy {w.state}, {w.stored_lines:,} lines stored; shown for {_fmt(w.shown)} s "
        f"(command → last write); root gaps ≥ {_fmt(w.root.min_gap, digits=2)} s, progress gaps ≥ "
        f"{_fmt(w.progress.min_gap, digits=2)} s; other writes in the channel: {w.other_writes}."
    )
    if w.served_429:
        print("  the deploy's writes (t from its first write; a 429 is the fake's 1/s-per-channel limiter):")
        first = w.timeline[0][0] if w.timeline else 0.0
        previous = first
        for at, method, message, status in w.timeline:
            print(f"    {at - first:6.2f} s (+{at - previous:4.2f}) {method:<16} {message:<8} {status}")
            previous = at
    for note in w.notes:
        print(f"  {note}")


if __name__ == "__main__":
    sys.exit(main())
