"""Scenario 1: slash-command ack latency of `robot run` (while 4 deploys stream) vs a bare Bolt app."""

from __future__ import annotations

import os
import random
import statistics
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.lib.app_process import AppProcess, bare_argv, process_env, robot_argv, robot_config
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.support.harness import make_git_repo
from tests.support.wait import wait_for

PRINTER = Path(__file__).resolve().parent / "printer.py"
REPO = "acme/api"
CHANNEL = "C0API"
USER = "U0BENCH01"
STREAM_ENVS = ("s1", "s2", "s3", "s4")
QUICK_ENVS = ("q1", "q2", "q3", "q4", "q5", "q6")
SHAS = 30
PING_INTERVAL = 10.0  # the robot's default
CONNECT_SECONDS = 30.0
BATCH_ACK_SECONDS = 10.0
STREAMS_RUNNING_SECONDS = 30.0
STREAM_PAUSE = 0.01
# The streams outlive the measurement; `robot run` kills them on SIGTERM, and a printer whose
# reader is gone dies on its next write, so no printer can outlive this by much.
STREAM_SECONDS = 150.0
STEP_TIMEOUT = 170.0
WARM_UP = 5
IDLE_SAMPLE_SECONDS = 1.0
ANSWER_SECONDS = 15.0
# Of every 50 commands: mostly deploys, some status and help.
SCRAPE_SECONDS = 0.5  # with metrics on: far more often than Prometheus's usual 15 s to 1 min
STATUS_PER_50 = 5
HELP_PER_50 = 5


@dataclass(frozen=True)
class Command:
    """One slash command of the mix."""

    kind: str  # "deploy" | "status" | "help"
    command: str
    text: str


@dataclass
class Sample:
    """One command's ack as the fake saw it."""

    kind: str
    latency: float | None  # None: no ack within the batch's timeout
    answer: str
    envelope: str = ""
    answered_in: float | None = None  # send → the real answer (the ack, or the response_url post after ⏳)


@dataclass
class AckResult:
    """The ack latencies of the robot and of the bare app, measured in alternating batches."""

    count: int
    batch: int
    stream_lines_per_second: float
    robot: list[Sample] = field(default_factory=list)
    bare: list[Sample] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    robot_cpu: float = 0.0  # CPU seconds each process spent during its own batches
    bare_cpu: float = 0.0
    robot_idle_cpu: float = 0.0  # CPU seconds per second while no command is in flight
    bare_idle_cpu: float = 0.0
    deploys_created: int = 0
    deploys_run: int = 0
    stream_lines: int = 0


def mix(count: int, batch: int, shas: list[str], seed: int = 7) -> list[Command]:
    """``count`` commands: per ``batch``, some status and help, the rest deploys of distinct SHA/env."""
    rng = random.Random(seed)
    out: list[Command] = []
    deploy_number = 0
    for start in range(0, count, batch):
        size = min(batch, count - start)
        status = max(0, round(STATUS_PER_50 * size / 50))
        helps = max(0, round(HELP_PER_50 * size / 50))
        kinds = ["status"] * status + ["help"] * helps + ["deploy"] * (size - status - helps)
        rng.shuffle(kinds)
        for kind in kinds:
            if kind == "status":
                out.append(Command(kind, "/deploy-status", ""))
            elif kind == "help":
                out.append(Command(kind, "/deploy", "help"))
            else:
                sha = shas[deploy_number % len(shas)]
                env = QUICK_ENVS[(deploy_number // len(shas)) % len(QUICK_ENVS)]
                out.append(Command(kind, "/deploy", f"{REPO}@{sha} to {env}"))
                deploy_number += 1
    return out


def stream_argv(lines_per_burst: int) -> list[str]:
    """printer.py writing ``lines_per_burst`` lines every STREAM_PAUSE s for about STREAM_SECONDS.

    0 lines: a silent step as long (the control: the same deploys running, no output).
    """
    if lines_per_burst <= 0:
        return ["sleep", f"{STREAM_SECONDS:g}"]
    bursts = int(STREAM_SECONDS / STREAM_PAUSE)
    return [sys.executable, str(PRINTER), str(bursts * lines_per_burst), str(bursts), f"{STREAM_PAUSE:g}"]


def send_batch(slack: FakeSlack, commands: list[Command], timeout: float) -> list[Sample]:
    """Send every command at once, then collect each ack (latency as the fake measured it)."""
    sent = [
        (c, slack.send_slash_command(c.command, c.text, user_id=USER, channel_id="C0HERE")) for c in commands
    ]
    deadline = time.monotonic() + timeout
    samples = []
    for command, envelope in sent:
        try:
            ack = slack.wait_ack(envelope, timeout=max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            samples.append(Sample(command.kind, None, "", envelope))
            continue
        text = str((ack.payload or {}).get("text", ""))
        answered = None if text.startswith("⏳") else ack.latency
        samples.append(Sample(command.kind, ack.latency, text, envelope, answered))
    return samples


def collect_answers(slack: FakeSlack, samples: list[Sample], timeout: float) -> None:
    """For acks that said ⏳, when the real answer reached the response_url (bounded wait)."""
    deadline = time.monotonic() + timeout
    for sample in samples:
        if sample.latency is None or sample.answered_in is not None:
            continue
        try:
            slack.wait_response(sample.envelope, timeout=max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            continue
        post = slack.response_posts(sample.envelope)[0]
        sample.answered_in = post.at - slack.envelope(sample.envelope).sent_at
        sample.answer = str(post.body.get("text", ""))


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU of a process (all its threads) so far, from /proc."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _idle_cpu(pids: list[int | None], seconds: float) -> list[float]:
    before = [cpu_seconds(p) for p in pids]
    time.sleep(seconds)
    return [(cpu_seconds(p) - b) / seconds for p, b in zip(pids, before, strict=True)]


def streams_running(github: FakeGitHub) -> int:
    running = 0
    for deployment in github.deployments(REPO):
        states = [s["body"].get("state") for s in deployment.statuses]
        running += deployment.environment in STREAM_ENVS and states[-1:] == ["in_progress"]
    return running


def measure_acks(
    root: Path,
    github: FakeGitHub,
    count: int,
    batch: int,
    lines_per_burst: int,
    *,
    against_robot: bool = False,
    metrics_port: int | None = None,
    scrape_seconds: float = SCRAPE_SECONDS,
    swap_slots: bool = False,
) -> AckResult:
    """Robot and bare app up side by side; their batches alternate so drift and load hit both.

    ``against_robot``: the baseline is the same robot (without metrics), streaming the same
    deploys. ``metrics_port``: the measured robot serves /metrics there, scraped every
    ``scrape_seconds`` while the batches run. ``swap_slots`` (with ``against_robot``): the
    measured robot takes the baseline's place (process, fake Slack) and the baseline its own,
    so that rounds alternating it cancel whatever favours one place; samples keep their role.
    """
    shas = [github.add_repo(REPO)] + [github.push(REPO, "main") for _ in range(SHAS - 1)]
    checkout = make_git_repo(root / "checkout")
    envs: dict[str, Any] = {
        env: {"folder": str(checkout), "timeout": STEP_TIMEOUT, "commands": [stream_argv(lines_per_burst)]}
        for env in STREAM_ENVS
    }
    envs.update({env: {"folder": str(checkout), "commands": [["true"]]} for env in QUICK_ENVS})
    repos = {REPO: {"channel": CHANNEL, "default_environment": QUICK_ENVS[0], "environments": envs}}
    result = AckResult(count, batch, lines_per_burst / STREAM_PAUSE)
    env = process_env(root / "pycache")
    with FakeSlack() as robot_slack, FakeSlack() as bare_slack:
        # Two workers more than the streams: queued deploys run (real pipeline work), two at a time.
        workers = len(STREAM_ENVS) + 2
        config = robot_config(
            root / "robot",
            github.url,
            robot_slack,
            repos,
            workers=workers,
            ping_interval=PING_INTERVAL,
            metrics_port=None if swap_slots else metrics_port,
        )
        if not against_robot:
            bare_argv_ = bare_argv(bare_slack, PING_INTERVAL)
        else:
            plain = robot_config(
                root / "plain",
                github.url,
                bare_slack,
                repos,
                workers=workers,
                ping_interval=PING_INTERVAL,
                metrics_port=metrics_port if swap_slots else None,
            )
            bare_argv_ = robot_argv(plain)
        robot = AppProcess("robot", robot_slack, robot_argv(config), env, root / "robot.log")
        bare = AppProcess("bare", bare_slack, bare_argv_, env, root / "bare.log")
        with robot.start(CONNECT_SECONDS), bare.start(CONNECT_SECONDS):
            streams = [Command("deploy", "/deploy", f"{REPO} to {e}") for e in STREAM_ENVS]
            streaming = [robot, bare] if against_robot else [robot]
            for app in streaming:
                started = send_batch(app.slack, streams, BATCH_ACK_SECONDS)
                if any(s.latency is None for s in started):
                    raise RuntimeError(f"the stream deploys were not acked: {app.log_tail()}")
            expected = len(STREAM_ENVS) * len(streaming)
            streams_up = lambda: streams_running(github) == expected  # noqa: E731
            wait_for(streams_up, STREAMS_RUNNING_SECONDS, f"{expected} streams", interval=0.1)
            commands = mix(count + WARM_UP, batch, shas)
            warm_up, measured = commands[:WARM_UP], commands[WARM_UP:]
            send_batch(robot_slack, warm_up, BATCH_ACK_SECONDS)
            send_batch(bare_slack, warm_up, BATCH_ACK_SECONDS)
            result.robot_idle_cpu, result.bare_idle_cpu = _idle_cpu(
                [robot.pid, bare.pid], IDLE_SAMPLE_SECONDS
            )
            cpu = {robot.pid: 0.0, bare.pid: 0.0}
            scraped = metrics_port if scrape_seconds > 0 else None
            with Scraper(scraped, scrape_seconds) as scraper:
                for first in range(0, count, batch):
                    chunk = measured[first : first + batch]
                    # Which app goes first alternates too, so neither always follows the other's burst.
                    order = [(bare, result.bare), (robot, result.robot)]
                    for app, samples in order if (first // batch) % 2 == 0 else order[::-1]:
                        before = cpu_seconds(app.pid)
                        samples.extend(send_batch(app.slack, chunk, BATCH_ACK_SECONDS))
                        cpu[app.pid] += cpu_seconds(app.pid) - before
            if scraped is not None:
                result.notes.append(
                    f"{scraper.scrapes} scrapes of the robot's /metrics ({scraper.failures} failed)"
                )
            result.robot_cpu, result.bare_cpu = cpu[robot.pid], cpu[bare.pid]
            collect_answers(robot_slack, result.robot, ANSWER_SECONDS)
            result.deploys_created = sum(1 for s in result.robot if s.answer.startswith("Deploy #"))
            result.deploys_run = len(github.deployments(REPO)) - len(STREAM_ENVS)
        result.notes.append(f"robot exit {robot.exit_code}, bare app exit {bare.exit_code}")
        result.stream_lines = _stream_lines(config)
        for fake in (robot_slack, bare_slack):
            result.notes.extend(f"fake Slack error: {e[-300:]}" for e in fake.server_errors)
    if swap_slots:
        result.robot, result.bare = result.bare, result.robot
        result.robot_cpu, result.bare_cpu = result.bare_cpu, result.robot_cpu
    return result


class Scraper:
    """GETs a robot's /metrics every ``every`` seconds on a thread, as a (busy) Prometheus would."""

    def __init__(self, port: int | None, every: float = SCRAPE_SECONDS) -> None:
        self._port = port
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scraper", daemon=True)
        self.scrapes = 0
        self.failures = 0

    def __enter__(self) -> Scraper:
        if self._port is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)

    def _run(self) -> None:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self._port}/metrics", timeout=5) as answer:
                    answer.read()
                self.scrapes += 1
            except OSError:
                self.failures += 1
            if self._stop.wait(self._every):
                return


def _stream_lines(config: Path) -> int:
    """Lines the 4 streams put in the robot's store (read after the robot has stopped)."""
    from bot.store import SqlStore

    store = SqlStore.from_url(f"sqlite:///{config.parent / 'robot.db'}")
    try:
        deploys = [d for d in store.list_deploys(REPO, limit=500) if d.env in STREAM_ENVS]
        return sum(store.read_log(d.id).count("\n") for d in deploys)
    finally:
        store.close()


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def latencies(samples: list[Sample]) -> list[float]:
    return [s.latency for s in samples if s.latency is not None]


def describe(samples: list[Sample]) -> str:
    """How the acks answered: direct replies, deferred (⏳), refusals (⚠️), missing."""
    answered = [s for s in samples if s.latency is not None]
    deferred = sum(1 for s in answered if s.latency != s.answered_in)
    refused = sum(1 for s in answered if s.answer.startswith("⚠️"))
    kinds = sorted({s.kind for s in samples})
    medians = ", ".join(
        f"{kind} {statistics.median(lat) * 1000:.0f}"
        for kind in kinds
        if (lat := latencies([s for s in samples if s.kind == kind]))
    )
    return (
        f"{len(answered)}/{len(samples)} acked, {deferred} deferred (⏳), {refused} refused (⚠️); "
        f"median ms by kind: {medians}"
    )
