"""Scenario 3: ack latency of button clicks (Deploy, Approve, Reject) while 4 deploys stream.

One `robot run` process, its config as scenario 1's plus environments that want one approval.
Deploys awaiting approval are requested first (slash commands, not measured); then Deploy,
Approve and Reject clicks go in mixed batches. Latency = the fake's send of the envelope → the
fake's receipt of the ack; the Approve / Reject figures are judged against the Deploy button's.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.lib.acks import (
    BATCH_ACK_SECONDS,
    CONNECT_SECONDS,
    PING_INTERVAL,
    QUICK_ENVS,
    REPO,
    SHAS,
    STEP_TIMEOUT,
    STREAM_ENVS,
    STREAMS_RUNNING_SECONDS,
    USER,
    Command,
    Sample,
    _streams_running,
    send_batch,
    stream_argv,
)
from bench.lib.app_process import AppProcess, process_env, robot_argv, robot_config
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.support.harness import make_git_repo
from tests.support.wait import wait_for

APPROVER = "U0BENCHAP"
CHANNEL = "C0API"
APPROVAL_ENVS = ("a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8")
AWAITING_SECONDS = 60.0
KINDS = ("deploy button", "approve", "reject")


@dataclass
class ClickResult:
    """Each click kind's samples, in the order sent."""

    clicks: int
    batch: int
    samples: dict[str, list[Sample]] = field(default_factory=lambda: {k: [] for k in KINDS})
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Click:
    """One button click of the mix."""

    kind: str
    action_id: str
    value: str


def measure_click_acks(
    root: Path, github: FakeGitHub, clicks: int, batch: int, lines_per_burst: int
) -> ClickResult:
    """``clicks`` clicks of each kind, ``batch`` at a time (kinds mixed), while 4 deploys stream."""
    from bot.slack.ids import APPROVE_ACTION, REJECT_ACTION, deploy_action_id, encode_deploy_value

    shas = [github.add_repo(REPO)] + [github.push(REPO, "main") for _ in range(SHAS - 1)]
    checkout = make_git_repo(root / "checkout")
    envs: dict[str, Any] = {
        env: {"folder": str(checkout), "timeout": STEP_TIMEOUT, "commands": [stream_argv(lines_per_burst)]}
        for env in STREAM_ENVS
    }
    envs.update({env: {"folder": str(checkout), "commands": [["true"]]} for env in QUICK_ENVS})
    approvals = {"required": 1, "approvers": [APPROVER], "timeout": 3600}
    envs.update(
        {
            env: {"folder": str(checkout), "commands": [["true"]], "approvals": approvals}
            for env in APPROVAL_ENVS
        }
    )
    repos = {REPO: {"channel": CHANNEL, "default_environment": QUICK_ENVS[0], "environments": envs}}
    result = ClickResult(clicks, batch)
    pairs = [(sha, env) for env in APPROVAL_ENVS for sha in shas]
    if 2 * clicks > len(pairs) or clicks > len(QUICK_ENVS) * len(shas):
        raise ValueError(f"at most {min(len(pairs) // 2, len(QUICK_ENVS) * len(shas))} clicks of each kind")
    with FakeSlack() as slack:
        config = robot_config(
            root / "robot",
            github.url,
            slack,
            repos,
            workers=len(STREAM_ENVS) + 2,
            ping_interval=PING_INTERVAL,
        )
        robot = AppProcess(
            "robot", slack, robot_argv(config), process_env(root / "pycache"), root / "robot.log"
        )
        with robot.start(CONNECT_SECONDS):
            streams = [Command("deploy", "/deploy", f"{REPO} to {e}") for e in STREAM_ENVS]
            if any(s.latency is None for s in send_batch(slack, streams, BATCH_ACK_SECONDS)):
                raise RuntimeError(f"the stream deploys were not acked: {robot.log_tail()}")
            wanted = len(STREAM_ENVS)
            wait_for(
                lambda: _streams_running(github) == wanted, STREAMS_RUNNING_SECONDS, "streams", interval=0.1
            )
            requests = [
                Command("request", "/deploy", f"{REPO}@{sha} to {env}") for sha, env in pairs[: 2 * clicks]
            ]
            for first in range(0, len(requests), batch):
                send_batch(slack, requests[first : first + batch], BATCH_ACK_SECONDS)
            ids = _awaiting_ids(config.parent / "robot.db", 2 * clicks)
            mix = [Click("approve", APPROVE_ACTION, str(i)) for i in ids[:clicks]]
            mix += [Click("reject", REJECT_ACTION, str(i)) for i in ids[clicks : 2 * clicks]]
            quick = [(sha, env) for env in QUICK_ENVS for sha in shas][:clicks]
            mix += [
                Click("deploy button", deploy_action_id(env), encode_deploy_value(REPO, env, sha))
                for sha, env in quick
            ]
            random.Random(11).shuffle(mix)
            for first in range(0, len(mix), batch):
                for click, sample in zip(
                    mix[first : first + batch], _click_batch(slack, mix[first : first + batch]), strict=True
                ):
                    result.samples[click.kind].append(sample)
            result.notes.append(_outcomes(config.parent / "robot.db", ids, clicks))
        result.notes.append(f"robot exit {robot.exit_code}")
        result.notes.extend(f"fake Slack error: {e[-300:]}" for e in slack.server_errors)
    return result


def _awaiting_ids(database: Path, want: int) -> list[int]:
    """The ids of the deploys awaiting approval, once ``want`` of them are recorded."""
    from bot.models import DeployState
    from bot.store import SqlStore

    store = SqlStore.from_url(f"sqlite:///{database}", upgrade=False)
    found: list[int] = []

    def enough() -> bool:
        found[:] = [
            d.id for d in store.list_deploys(REPO, states=[DeployState.AWAITING_APPROVAL], limit=1000)
        ]
        return len(found) >= want

    try:
        wait_for(enough, AWAITING_SECONDS, f"{want} deploys awaiting approval")
    finally:
        store.close()
    return sorted(found)


def _outcomes(database: Path, ids: list[int], clicks: int) -> str:
    """What the clicks did: the approved deploys left awaiting approval, the rejected ones rejected."""
    from collections import Counter

    from bot.models import DeployState
    from bot.store import SqlStore

    store = SqlStore.from_url(f"sqlite:///{database}", upgrade=False)
    started = time.monotonic()
    states: list[Any] = []

    def settled() -> bool:
        states[:] = [store.get_deploy(i) for i in ids]
        return not any(d is None or d.state is DeployState.AWAITING_APPROVAL for d in states)

    try:
        wait_for(settled, AWAITING_SECONDS, "every clicked deploy decided", interval=0.2)
    except AssertionError:
        pass  # reported below as what it is
    finally:
        store.close()
    took = time.monotonic() - started
    approved = Counter(d.state.value for d in states[:clicks] if d is not None)
    rejected = Counter(d.state.value for d in states[clicks:] if d is not None)
    return (
        f"{took:.1f} s after the last ack: the Approve clicks' deploys {dict(approved)}, "
        f"the Reject clicks' {dict(rejected)}"
    )


def _click_batch(slack: FakeSlack, clicks: list[Click]) -> list[Sample]:
    """Send every click at once, then collect each (empty) ack's latency."""
    sent = [
        (
            c,
            slack.send_block_action(
                c.action_id,
                c.value,
                user_id=APPROVER if c.kind != "deploy button" else USER,
                channel_id=CHANNEL,
            ),
        )
        for c in clicks
    ]
    deadline = time.monotonic() + BATCH_ACK_SECONDS
    samples = []
    for click, envelope in sent:
        try:
            ack = slack.wait_ack(envelope, timeout=max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            samples.append(Sample(click.kind, None, "", envelope))
            continue
        samples.append(Sample(click.kind, ack.latency, "", envelope))
    return samples
