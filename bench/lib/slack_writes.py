"""Scenario 2: Slack writes of one deploy whose step prints 200,000 lines, against a 1 write/s limiter."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.lib.app_process import AppProcess, process_env, robot_argv, robot_config
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.support.harness import make_git_repo

PRINTER = Path(__file__).resolve().parent / "printer.py"
REPO = "acme/big"
CHANNEL = "C0BIG"
BURSTS = 200
PACE_SECONDS = 4.0  # the printer sleeps this long in all, between bursts ("over a few seconds")
WRITE_LIMIT_PER_SECOND = 1.0
CONNECT_SECONDS = 30.0
ACK_SECONDS = 10.0
DEPLOY_SECONDS = 90.0
QUIET_SECONDS = 3.0  # no write for this long after the final state: the deploy's writes are done
SETTLE_SECONDS = 20.0
_WRITES = ("chat.postMessage", "chat.update")


@dataclass
class MessageWrites:
    """The write calls aimed at one message (429s included), with their times."""

    name: str
    times: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    @property
    def span(self) -> float:
        return self.times[-1] - self.times[0] if len(self.times) > 1 else 0.0

    @property
    def accepted(self) -> int:
        return sum(1 for status in self.statuses if status == 200)

    @property
    def min_gap(self) -> float:
        gaps = [b - a for a, b in zip(self.times, self.times[1:], strict=False)]
        return min(gaps) if gaps else float("nan")


@dataclass
class WritesResult:
    """What one long-output deploy cost in Slack writes."""

    lines: int
    state: str = "?"
    duration: float = float("nan")  # the deploy's own start → finish (store)
    shown: float = float("nan")  # command sent → the deploy's last Slack write
    root: MessageWrites = field(default_factory=lambda: MessageWrites("root"))
    progress: MessageWrites = field(default_factory=lambda: MessageWrites("progress"))
    other_writes: int = 0  # writes in the channel to neither message (should be none)
    served_429: int = 0
    stored_lines: int = 0
    timeline: list[tuple[float, str, str, int]] = field(default_factory=list)  # (at, method, message, status)
    notes: list[str] = field(default_factory=list)

    @property
    def writes(self) -> int:
        return len(self.root.times) + len(self.progress.times)

    @property
    def accepted(self) -> int:
        return self.root.accepted + self.progress.accepted

    @property
    def per_message_per_2s(self) -> float:
        """Write calls per message per 2 s: 2 s over the mean gap between writes to one message.

        Gaps, not writes over a duration: n writes span n-1 gaps, so a deploy shorter than
        a few seconds is not charged for its first post.
        """
        messages = [m for m in (self.root, self.progress) if len(m.times) > 1]
        gaps = sum(len(m.times) - 1 for m in messages)
        span = sum(m.span for m in messages)
        return 2.0 * gaps / span if span > 0 else float("nan")


def printer_argv(lines: int) -> list[str]:
    return [sys.executable, str(PRINTER), str(lines), str(BURSTS), f"{PACE_SECONDS / BURSTS:.4f}"]


def measure_writes(root: Path, github: FakeGitHub, lines: int) -> WritesResult:
    """One `/deploy` through the socket; count its root and progress writes once Slack is quiet."""
    github.add_repo(REPO)
    checkout = make_git_repo(root / "checkout-big")
    repos = {
        REPO: {
            "channel": CHANNEL,
            "environments": {
                "production": {
                    "folder": str(checkout),
                    "timeout": DEPLOY_SECONDS,
                    "commands": [printer_argv(lines)],
                }
            },
        }
    }
    result = WritesResult(lines)
    with FakeSlack() as slack:
        slack.enforce_write_limit(WRITE_LIMIT_PER_SECOND)
        config = robot_config(root / "robot-big", github.url, slack, repos, workers=4, ping_interval=10.0)
        robot = AppProcess(
            "robot", slack, robot_argv(config), process_env(root / "pycache"), root / "big.log"
        )
        with robot.start(CONNECT_SECONDS):
            envelope = slack.send_slash_command("/deploy", REPO, user_id="U0BENCH01", channel_id="C0HERE")
            sent_at = slack.envelope(envelope).sent_at
            answer = (slack.wait_ack(envelope, timeout=ACK_SECONDS).payload or {}).get("text", "")
            if not str(answer).startswith("Deploy #"):
                raise RuntimeError(f"the deploy was not queued: {answer!r}")
            slack.wait_for(lambda: _root_final(slack), DEPLOY_SECONDS, "the root message to show the end")
            _wait_quiet(slack)
            _count(slack, result)
            result.shown = max(result.root.times + result.progress.times) - sent_at
            result.served_429 = slack.served_429
        result.notes.append(f"robot exit {robot.exit_code}")
        result.notes.extend(f"fake Slack error: {e[-300:]}" for e in slack.server_errors)
    _read_store(config, result)
    return result


def _root_final(slack: FakeSlack) -> bool:
    roots = [m for m in slack.messages(CHANNEL) if m.thread_ts is None]
    if not roots:
        return False
    shown = json.dumps(roots[0].blocks, ensure_ascii=False)
    return any(word in shown for word in ("succeeded", "failed", "cancelled", "interrupted"))


def _wait_quiet(slack: FakeSlack) -> None:
    """Until no write has been made for QUIET_SECONDS (bounded by SETTLE_SECONDS)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        writes = [c.at for c in slack.calls if c.method in _WRITES]
        if writes and time.monotonic() - max(writes) >= QUIET_SECONDS:
            return
        time.sleep(0.2)


def _count(slack: FakeSlack, result: WritesResult) -> None:
    """Sort the channel's writes into the root and the progress message (429'd attempts count too)."""
    roots = [m for m in slack.messages(CHANNEL) if m.thread_ts is None]
    root_ts = roots[0].ts if roots else None
    replies = slack.thread(CHANNEL, root_ts) if root_ts else []
    progress_ts = replies[0].ts if replies else None
    for call in slack.calls:
        if call.method not in _WRITES or call.args.get("channel") != CHANNEL:
            continue
        if call.method == "chat.postMessage":
            target = result.progress if call.args.get("thread_ts") else result.root
        elif call.args.get("ts") == root_ts:
            target = result.root
        elif call.args.get("ts") == progress_ts:
            target = result.progress
        else:
            result.other_writes += 1
            continue
        target.times.append(call.at)
        target.statuses.append(call.status)
        result.timeline.append((call.at, call.method, target.name, call.status))


def _read_store(config: Path, result: WritesResult) -> None:
    from bot.store import SqlStore

    store = SqlStore.from_url(f"sqlite:///{config.parent / 'robot.db'}")
    try:
        deploys = store.list_deploys(REPO, limit=1)
        if deploys:
            result.state = deploys[0].state.value
            result.duration = deploys[0].duration_seconds or float("nan")
            result.stored_lines = store.read_log(deploys[0].id).count("\n")
    finally:
        store.close()
