"""Benchmark: App Home — open → published latency under the ack bench's load, and republish pacing.

1. Open → published: `robot run` (its own process) streams 4 deploys as bench/ack_latency.py's
   scenario 1 does, and takes batches of BATCH slash commands; with each batch, OPENS_PER_BATCH
   new users open the Home tab. Latency = the fake's send of `app_home_opened` → its receipt of
   that user's `views.publish`; the baseline is the ack latency of the same run's commands
   (send → ack), so the ratio says what a Home costs next to the answer Slack waits for.
2. Republish pacing: VIEWERS users open Home, then a burst of DEPLOYS deploys (quick steps,
   distinct SHAs and environments) with the default `slack.home_interval` (10 s); every
   `views.publish` each viewer got after their open is counted per 10 s window.
Runs on 127.0.0.1 only, every wait under a timeout, temp dirs removed; always exits 0.
Usage (repo root): python bench/home.py [--batches 6] [--deploys 50]
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent

if TYPE_CHECKING:
    from tests.fakes.github import FakeGitHub
    from tests.fakes.slack import FakeSlack

BATCH = 50
OPENS_PER_BATCH = 10
VIEWERS = 5
HOME_INTERVAL = 10.0  # the default slack.home_interval
P99_RATIO_TARGET = 1.5
CONNECT_SECONDS = 30.0
WAIT_SECONDS = 60.0
PUBLISH_WAIT_SECONDS = 15.0
BURST_SETTLE_SECONDS = HOME_INTERVAL + 2.0


@dataclass
class OpenResult:
    """Home open → published latencies and the same run's ack latencies."""

    opens: list[float] = field(default_factory=list)
    missing: int = 0
    acks: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class BurstResult:
    """Each viewer's publishes during (and just after) the burst, as monotonic times."""

    deploys: int
    seconds: float = 0.0
    per_user: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def main(argv: list[str] | None = None) -> int:
    """Run both scenarios and print the table; report, never fail."""
    args = _parser().parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from bench.lib.bootstrap import reporting, took, use_repo_venv

    use_repo_venv("slack_bolt", "sqlalchemy")
    began = time.monotonic()
    opens: OpenResult | None = None
    burst: BurstResult | None = None
    with tempfile.TemporaryDirectory(prefix="bench-home-") as tmp:
        root = Path(tmp)
        from bench.lib.app_process import kill_leftovers

        with reporting(lambda: kill_leftovers(root)):
            opens = _scenario_opens(root / "opens", args.batches)
            burst = _scenario_burst(root / "burst", args.deploys)
    _report(opens, burst)
    print(took(began))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--batches", type=int, default=6, help="command batches with Home opens (default: %(default)s)"
    )
    p.add_argument("--deploys", type=int, default=50, help="deploys in the burst (default: %(default)s)")
    return p


def _world(
    root: Path, github: FakeGitHub, slack: FakeSlack, streams: bool, shas: int = 30
) -> tuple[Path, list[str]]:
    """The ack bench's repo (4 streaming and 6 quick environments) and its robot.yaml."""
    from bench.lib.acks import QUICK_ENVS, REPO, STEP_TIMEOUT, STREAM_ENVS, stream_argv
    from bench.lib.app_process import robot_config
    from tests.support.harness import make_git_repo

    heads = [github.add_repo(REPO)] + [github.push(REPO, "main") for _ in range(shas - 1)]
    checkout = make_git_repo(root / "checkout")
    envs: dict[str, Any] = {env: {"folder": str(checkout), "commands": [["true"]]} for env in QUICK_ENVS}
    if streams:
        envs.update(
            {
                env: {"folder": str(checkout), "timeout": STEP_TIMEOUT, "commands": [stream_argv(10)]}
                for env in STREAM_ENVS
            }
        )
    repos = {REPO: {"channel": "C0API", "default_environment": QUICK_ENVS[0], "environments": envs}}
    config = robot_config(root / "robot", github.url, slack, repos, workers=6, ping_interval=10.0)
    return config, heads


def _scenario_opens(root: Path, batches: int) -> OpenResult:
    from bench.lib.acks import STREAM_ENVS, Command, mix, send_batch, streams_running
    from bench.lib.app_process import AppProcess, process_env, robot_argv
    from tests.fakes.github import FakeGitHub
    from tests.fakes.slack import FakeSlack
    from tests.support.harness import TOKEN
    from tests.support.wait import wait_for

    print(
        f"Scenario 1: {batches} batches of {BATCH} commands, {OPENS_PER_BATCH} Home opens with each, "
        "4 deploys streaming ~1,000 lines/s each …",
        flush=True,
    )
    result = OpenResult()
    github = FakeGitHub(tokens={TOKEN: "deploy-robot"}).start()
    try:
        with FakeSlack() as slack:
            config, shas = _world(root, github, slack, streams=True)
            robot = AppProcess(
                "robot", slack, robot_argv(config), process_env(root / "pycache"), root / "robot.log"
            )
            with robot.start(CONNECT_SECONDS):
                streams = [Command("deploy", "/deploy", f"acme/api to {e}") for e in STREAM_ENVS]
                send_batch(slack, streams, WAIT_SECONDS)
                wait_for(lambda: streams_running(github) == len(STREAM_ENVS), WAIT_SECONDS, "4 streams")
                commands = mix(batches * BATCH, BATCH, shas)
                for n in range(batches):
                    users = [f"U0HOME{n:02d}{i:02d}" for i in range(OPENS_PER_BATCH)]
                    sent = {user: slack.send_app_home_opened(user) for user in users}
                    samples = send_batch(slack, commands[n * BATCH : (n + 1) * BATCH], WAIT_SECONDS)
                    result.acks.extend(s.latency for s in samples if s.latency is not None)
                    for user, envelope in sent.items():
                        latency = _published_after(slack, user, slack.envelope(envelope).sent_at)
                        if latency is None:
                            result.missing += 1
                        else:
                            result.opens.append(latency)
            result.notes.append(f"robot exit {robot.exit_code}")
            result.notes.extend(f"fake Slack error: {e[-300:]}" for e in slack.server_errors)
    finally:
        github.stop()
    return result


def _published_after(slack: FakeSlack, user: str, sent_at: float) -> float | None:
    """Seconds from ``sent_at`` to ``user``'s first views.publish (None: none within the wait)."""
    deadline = time.monotonic() + PUBLISH_WAIT_SECONDS
    while time.monotonic() < deadline:
        found = slack.published(user)
        if found:
            return found[0].at - sent_at
        time.sleep(0.01)
    return None


def _scenario_burst(root: Path, deploys: int) -> BurstResult:
    from bench.lib.acks import QUICK_ENVS, Command, send_batch
    from bench.lib.app_process import AppProcess, process_env, robot_argv
    from tests.fakes.github import FakeGitHub
    from tests.fakes.slack import FakeSlack
    from tests.support.harness import TOKEN
    from tests.support.wait import wait_for

    print(f"Scenario 2: {VIEWERS} viewers, a burst of {deploys} deploys, default home_interval …", flush=True)
    result = BurstResult(deploys)
    github = FakeGitHub(tokens={TOKEN: "deploy-robot"}).start()
    try:
        with FakeSlack() as slack:
            config, shas = _world(root, github, slack, streams=False, shas=deploys)
            robot = AppProcess(
                "robot", slack, robot_argv(config), process_env(root / "pycache"), root / "robot.log"
            )
            with robot.start(CONNECT_SECONDS):
                viewers = [f"U0VIEW{i:03d}" for i in range(VIEWERS)]
                for user in viewers:
                    slack.send_app_home_opened(user)
                wait_for(lambda: all(slack.published(u) for u in viewers), WAIT_SECONDS, "every Home")
                began = time.monotonic()
                burst = [
                    Command(
                        "deploy",
                        "/deploy",
                        f"acme/api@{shas[n % len(shas)]} to {QUICK_ENVS[n % len(QUICK_ENVS)]}",
                    )
                    for n in range(deploys)
                ]
                send_batch(slack, burst, WAIT_SECONDS)
                wait_for(lambda: _finished(github) >= deploys, 120.0, f"{deploys} deploys", interval=0.2)
                result.seconds = time.monotonic() - began
                time.sleep(BURST_SETTLE_SECONDS)  # the last paced publish lands
                result.per_user = {u: [p.at for p in slack.published(u)] for u in viewers}
            result.notes.append(f"robot exit {robot.exit_code}")
            result.notes.extend(f"fake Slack error: {e[-300:]}" for e in slack.server_errors)
    finally:
        github.stop()
    return result


def _finished(github: FakeGitHub) -> int:
    done = 0
    for deployment in github.deployments("acme/api"):
        states = [s["body"].get("state") for s in deployment.statuses]
        done += bool(states) and states[-1] in ("success", "failure", "error")
    return done


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    from bench.lib.acks import percentile

    return percentile(values, q)


def _max_per_window(times: list[float], window: float) -> int:
    """The most publishes any ``window`` s (half-open) held."""
    ordered = sorted(times)
    return max((sum(1 for t in ordered if start <= t < start + window) for start in ordered), default=0)


def _fmt(value: float, digits: int = 0) -> str:
    return "—" if math.isnan(value) else f"{value:.{digits}f}"


def _report(opens: OpenResult | None, burst: BurstResult | None) -> None:
    rows: list[tuple[str, str, str, str, str, str]] = []
    if opens is not None:
        home_p50, home_p99 = _percentile(opens.opens, 50) * 1000, _percentile(opens.opens, 99) * 1000
        ack_p50, ack_p99 = _percentile(opens.acks, 50) * 1000, _percentile(opens.acks, 99) * 1000
        ratio = home_p99 / ack_p99 if ack_p99 and not math.isnan(ack_p99) else math.nan
        met = "yes" if ratio <= P99_RATIO_TARGET and opens.missing == 0 else "NO"
        rows.append(
            (
                "Home open → published p99 (ms), 4 streams + commands",
                _fmt(home_p99),
                f"ack p99 {_fmt(ack_p99)}",
                _fmt(ratio, 2),
                f"≤ {P99_RATIO_TARGET}× ack",
                met,
            )
        )
        rows.append(
            ("Home open → published p50 (ms)", _fmt(home_p50), f"ack p50 {_fmt(ack_p50)}", "", "", "")
        )
    if burst is not None and burst.per_user:
        # Each viewer's first publish is their own open; the burst's republishes follow.
        worst = max(_max_per_window(times[1:], HOME_INTERVAL) for times in burst.per_user.values())
        counts = [len(times) - 1 for times in burst.per_user.values()]
        uncoalesced = 3 * burst.deploys  # queued, running, final: at least one change each
        rows.append(
            (
                f"views.publish per user per 10 s, {burst.deploys}-deploy burst",
                str(worst),
                f"≥ {uncoalesced} changes",
                "",
                "≤ 1",
                "yes" if worst <= 1 else "NO",
            )
        )
        rows.append(
            (
                f"views.publish per user over the burst ({burst.seconds:.0f} s)",
                f"{min(counts)}–{max(counts)}",
                str(uncoalesced),
                _fmt(max(counts) / uncoalesced, 3),
                "",
                "",
            )
        )
    if not rows:
        return
    header = ("what", "robot", "baseline", "ratio", "target", "met?")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print()
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print(" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print()
    if opens is not None:
        print(f"opens: {len(opens.opens)} published, {opens.missing} missing; acks: {len(opens.acks)}")
        for note in opens.notes:
            print(f"note: {note}")
    if burst is not None:
        for user, times in burst.per_user.items():
            gaps = [b - a for a, b in itertools.pairwise(times[1:])]
            shortest = f"{min(gaps):.1f} s" if gaps else "—"
            print(f"{user}: {len(times) - 1} republishes, shortest gap {shortest}")
        for note in burst.notes:
            print(f"note: {note}")


if __name__ == "__main__":
    sys.exit(main())
