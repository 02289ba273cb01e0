"""Benchmark: what Prometheus metrics cost `robot run` — one scrape, and ack latency with them on.

1. Scrape: a robot (in this process, the one rig) configured with REPOS repos, 3 environments each,
   its store seeded with a history (HISTORY finished deploys per environment, a few queued behind
   locks) and its metrics holding a series for every repo + environment; SCRAPES GETs of
   /metrics over HTTP on 127.0.0.1, median wall time, against a 404 from the same server (the
   HTTP round trip alone).
2. Acks: bench/lib/acks.py's scenario (COMMANDS slash commands, BATCH at a time, while deploys
   stream) with two robots side by side, batches alternating: one serving metrics (scraped
   every 0.5 s while the batches run), one without; ROUNDS runs, the two trading places
   (process slot, fake Slack, order) every other round, their samples pooled. Then
   the same with metrics off in both (the control: how far two identical robots differ here),
   and the CPU of one call of each instrument on the hot paths.
Runs on 127.0.0.1 only, every wait under a timeout, temp dirs removed; always exits 0.
Usage (repo root): python bench/metrics_cost.py [--repos 50] [--scrapes 50] [--commands 200] [--rounds 4]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent

if TYPE_CHECKING:
    from bench.lib.acks import AckResult

SCRAPE_TARGET_MS = 20.0
ACK_P99_TARGET = 1.05
ENVIRONMENTS = ("staging", "production", "canary")
HISTORY = 4  # finished deploys per environment in the seeded store
LOCKED = 10  # environments locked, each with QUEUED deploys waiting behind the lock
QUEUED = 3
CHANGED_SCRAPES = 10
CALLS = 100_000
Row = tuple[str, str, str, str, str, str]


@dataclass
class ScrapeResult:
    """Scrape timings (seconds) of /metrics and of a 404 from the same server, and the scrape's size."""

    metrics: list[float]
    floor: list[float]
    changed: list[float]  # scrapes right after a deploy ended (its series re-rendered)
    samples: int
    size: int
    environments: int
    deploys: int


def main(argv: list[str] | None = None) -> int:
    """Run both scenarios and print the table; report, never fail."""
    args = _parser().parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from bench.lib.bootstrap import reporting, took, use_repo_venv

    use_repo_venv("slack_bolt", "sqlalchemy", "prometheus_client")
    began = time.monotonic()
    scrape: ScrapeResult | None = None
    costs: dict[str, float] = {}
    acks: AckResult | None = None
    control: AckResult | None = None
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp:
        root = Path(tmp)
        from bench.lib.app_process import kill_leftovers

        with reporting(lambda: kill_leftovers(root)):
            scrape = _scenario_scrape(root / "scrape", args)
            costs = _call_costs()
            print(
                f"Scenario 2: {args.rounds} rounds of {args.commands} commands per robot, {args.batch} at a "
                f"time, 4 deploys streaming ~{args.stream_burst * 100} lines/s in each robot: metrics on vs "
                "off, then off vs off (the control) …",
                flush=True,
            )
            acks = _scenario_acks(root / "acks", args, metrics=True)
            control = _scenario_acks(root / "control", args, metrics=False)
    _report(scrape, costs, acks, control)
    print(took(began))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--repos", type=int, default=50, help="configured repos, 3 environments each (%(default)s)"
    )
    p.add_argument("--scrapes", type=int, default=50, help="timed scrapes (default: %(default)s)")
    p.add_argument("--commands", type=int, default=200, help="measured commands per robot (%(default)s)")
    p.add_argument("--batch", type=int, default=50, help="commands in flight at once (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=4, help="runs of scenario 2, pooled (default: %(default)s)")
    p.add_argument(
        "--scrape-every",
        type=float,
        default=0.5,
        help="seconds between scrapes in scenario 2, 0: none (%(default)s)",
    )
    p.add_argument(
        "--stream-burst", type=int, default=10, help="lines each stream prints every 10 ms (%(default)s)"
    )
    return p


# ---- 1. one scrape -----------------------------------------------------------------------


def _scenario_scrape(root: Path, args: argparse.Namespace) -> ScrapeResult:
    from prometheus_client.parser import text_string_to_metric_families

    from tests.fakes.github import FakeGitHub
    from tests.fakes.slack import FakeSlack
    from tests.support.harness import TOKEN
    from tests.support.rig import RobotRig

    root.mkdir(parents=True)
    names = [f"acme/service-{i:02d}" for i in range(args.repos)]
    print(
        f"Scenario 1: {args.scrapes} scrapes, {len(names)} repos × {len(ENVIRONMENTS)} environments …",
        flush=True,
    )
    repos = {
        name: {"environments": {env: {"folder": str(root), "commands": [["true"]]} for env in ENVIRONMENTS}}
        for name in names
    }
    deploys = _seed(root, names)
    github = FakeGitHub(tokens={TOKEN: "deploy-robot"}).start()
    try:
        for name in names:
            github.add_repo(name)
        with (
            FakeSlack() as slack,
            RobotRig(
                root,
                github,
                slack,
                repos,
                github_settings={"poll_interval": 30},
                metrics={"host": "127.0.0.1", "port": 0},
            ) as rig,
        ):
            _fill_series(rig, names)
            server = rig.robot.metrics_server
            assert server is not None
            base = f"http://127.0.0.1:{server.port}"
            for _ in range(5):  # warm up: connections, first collection
                _get(f"{base}/metrics")
            timed = [_get(f"{base}/metrics") for _ in range(args.scrapes)]
            floor = [_get(f"{base}/nothing-here") for _ in range(args.scrapes)]
            changed = []
            for _ in range(CHANGED_SCRAPES):
                _deploy_ends(rig, names[0])
                changed.append(_get(f"{base}/metrics"))
            with urllib.request.urlopen(f"{base}/metrics", timeout=10) as answer:
                text = answer.read().decode()
    finally:
        github.stop()
    samples = sum(len(f.samples) for f in text_string_to_metric_families(text))
    return ScrapeResult(timed, floor, changed, samples, len(text), len(names) * len(ENVIRONMENTS), deploys)


def _seed(root: Path, names: list[str]) -> int:
    """A store with a history: finished deploys everywhere, a few queued behind locks."""
    from bot.models import DeployRequest, DeployState, Source
    from bot.store import SqlStore
    from tests.support.rig import db_url

    store = SqlStore.from_url(db_url(root))
    count = 0
    try:
        states = (DeployState.SUCCEEDED, DeployState.FAILED, DeployState.SUCCEEDED, DeployState.CANCELLED)
        for r, name in enumerate(names):
            for e, env in enumerate(ENVIRONMENTS):
                for n in range(HISTORY):
                    sha = f"{r:02x}{e:02x}{n:04x}".ljust(40, "0")
                    deploy, _ = store.create_deploy(
                        DeployRequest(name, env, "main", sha, "bench", Source.CLI)
                    )
                    store.finish_deploy(deploy.id, states[n % len(states)], None)
                    count += 1
        locked = [(name, env) for name in names for env in ENVIRONMENTS][:LOCKED]
        for name, env in locked:
            store.set_lock(name, env, "bench", "seeded queue")
            for n in range(QUEUED):
                sha = f"ffff{n:04x}".ljust(40, "0")
                store.create_deploy(DeployRequest(name, env, "main", sha, "bench", Source.CLI))
                count += 1
    finally:
        store.close()
    return count


def _fill_series(rig: Any, names: list[str]) -> None:
    """Give the metrics a series for every repo + environment, as after a day of deploys."""
    from datetime import UTC, datetime, timedelta

    from bot.models import Deploy, DeployState, Source

    metrics = rig.robot.metrics
    assert metrics is not None
    end = datetime.now(UTC)
    for name in names:
        for env in ENVIRONMENTS:
            for state in (DeployState.SUCCEEDED, DeployState.FAILED):
                deploy = Deploy(0, name, env, "main", "0" * 40, "bench", Source.CLI, state)
                took = replace(deploy, started_at=end - timedelta(seconds=42), finished_at=end)
                metrics.deploy_ended(took)
                metrics.step_ended(deploy, 1.5)
    kinds = ("resolve ref", "read CI state", "create deployment", "set deployment status", "read repo")
    for kind in kinds:
        for status in ("2xx", "404", "502"):
            metrics.github_response(kind, status, 4000)
    for method in ("chat.postMessage", "chat.update", "files.completeUploadExternal"):
        metrics.slack_call(method, "ok")
        metrics.slack_rate_limited(method)
    for _ in range(20):
        metrics.ack_sent(0.05)


def _deploy_ends(rig: Any, repo: str) -> None:
    from datetime import UTC, datetime, timedelta

    from bot.models import Deploy, DeployState, Source

    metrics = rig.robot.metrics
    end = datetime.now(UTC)
    deploy = Deploy(0, repo, ENVIRONMENTS[0], "main", "0" * 40, "bench", Source.CLI, DeployState.SUCCEEDED)
    metrics.deploy_ended(replace(deploy, started_at=end - timedelta(seconds=30), finished_at=end))


def _get(url: str) -> float:
    began = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            answer.read()
    except urllib.error.HTTPError as error:
        error.read()
    return time.perf_counter() - began


# ---- 2. acks with metrics on and off -------------------------------------------------------


def _scenario_acks(root: Path, args: argparse.Namespace, *, metrics: bool) -> AckResult:
    """``rounds`` runs of the scenario, their samples pooled: one run's p99 is its 2nd-slowest ack.

    ``metrics`` False is the control: both robots without metrics, to show the noise floor.
    """
    from bench.lib.acks import measure_acks
    from tests.fakes.github import FakeGitHub
    from tests.support.harness import TOKEN

    pooled: AckResult | None = None
    for round_ in range(args.rounds):
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            port = int(free.getsockname()[1])
        github = FakeGitHub(tokens={TOKEN: "deploy-robot"}).start()
        try:
            result = measure_acks(
                root / f"{'ab' if metrics else 'aa'}-{round_}",
                github,
                args.commands,
                max(1, args.batch),
                args.stream_burst,
                against_robot=True,
                metrics_port=port if metrics else None,
                scrape_seconds=args.scrape_every,
                swap_slots=round_ % 2 == 1,
            )
        finally:
            github.stop()
        if pooled is None:
            pooled = result
        else:
            pooled.robot.extend(result.robot)
            pooled.bare.extend(result.bare)
            pooled.notes.extend(result.notes)
    assert pooled is not None
    return pooled


def _call_costs() -> dict[str, float]:
    """CPU µs of one call of each instrument on the hot paths (ack, Slack call, GitHub call, step)."""
    from bot.metrics import PrometheusMetrics

    metrics = PrometheusMetrics()
    calls: dict[str, Callable[[], None]] = {
        "ack_sent": lambda: metrics.ack_sent(0.05),
        "slack_call": lambda: metrics.slack_call("chat.update", "ok"),
        "github_response": lambda: metrics.github_response("set deployment status", "2xx", 4000),
        "poll_cycle": lambda: metrics.poll_cycle(0.1, 100, 100),
    }
    costs = {}
    for name, call in calls.items():
        for _ in range(1000):
            call()
        began = time.process_time()
        for _ in range(CALLS):
            call()
        costs[name] = (time.process_time() - began) / CALLS * 1e6
    return costs


# ---- report --------------------------------------------------------------------------------


def _report(
    scrape: ScrapeResult | None, costs: dict[str, float], acks: AckResult | None, control: AckResult | None
) -> None:
    rows: list[Row] = []
    if scrape is not None:
        rows.extend(_scrape_rows(scrape))
    if costs:
        shown = ", ".join(f"{name} {us:.1f}" for name, us in costs.items())
        rows.append(("metrics call, CPU each (µs)", shown, "", "", "(info)", ""))
    if acks is not None:
        rows.extend(_ack_rows(acks, "metrics on / off", ACK_P99_TARGET))
    if control is not None:
        rows.extend(_ack_rows(control, "control: off / off", None))
    if not rows:
        return
    header = ("what", "robot", "baseline", "ratio", "target", "met?")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print()
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print(" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print()
    if scrape is not None:
        print(
            f"Scrape scenario: {scrape.environments} environments, {scrape.deploys:,} deploys in the store "
            f"({LOCKED * QUEUED} queued); slowest scrape {max(scrape.metrics) * 1000:.1f} ms."
        )
    from bench.lib.acks import describe

    for name, result in (("metrics on / off", acks), ("control", control)):
        if result is None:
            continue
        print(f"Ack scenario, {name}: {describe(result.robot)}; baseline {describe(result.bare)}.")
        for note in sorted(set(result.notes)):
            print(f"  {note}")


def _scrape_rows(s: ScrapeResult) -> list[Row]:
    robot, floor = statistics.median(s.metrics) * 1000, statistics.median(s.floor) * 1000
    met = "yes" if robot <= SCRAPE_TARGET_MS else "NO"
    return [
        (
            f"scrape, {s.environments // len(ENVIRONMENTS)} repos × {len(ENVIRONMENTS)} envs, median (ms)",
            f"{robot:.1f}",
            f"{floor:.1f} (a 404, same server)",
            f"{robot / floor:.1f}×" if floor else "",
            f"≤ {SCRAPE_TARGET_MS:g} ms",
            met,
        ),
        (
            "  the first scrape after a deploy ended (ms)",
            f"{statistics.median(s.changed) * 1000:.1f}",
            "",
            "",
            "(info)",
            "",
        ),
        ("  scrape size", f"{s.samples:,} samples, {s.size / 1024:.0f} KiB", "", "", "", ""),
    ]


def _ack_rows(acks: AckResult, what: str, target: float | None) -> list[Row]:
    from bench.lib.acks import latencies, percentile

    on, off = latencies(acks.robot), latencies(acks.bare)
    if not on or not off:
        return [(f"ack latency, {what}", "no acks", "", "", "", "NO")]
    rows: list[Row] = []
    for label, q in ((f"ack p50, {what} (ms)", 50.0), (f"ack p99, {what} (ms)", 99.0)):
        a, b = percentile(on, q) * 1000, percentile(off, q) * 1000
        goal, met = "", ""
        if q == 99.0 and target is not None:
            goal, met = f"≤ {target:g}×", "yes" if a <= target * b else "NO"
        rows.append((label, f"{a:.1f}", f"{b:.1f}", f"{a / b:.2f}×", goal, met))
    every = len(on) == len(acks.robot) and len(off) == len(acks.bare)
    received = (f"{len(on)}/{len(acks.robot)}", f"{len(off)}/{len(acks.bare)}")
    rows.append((f"  acks received, {what}", *received, "", "all", "yes" if every else "NO"))
    return rows


if __name__ == "__main__":
    sys.exit(main())
