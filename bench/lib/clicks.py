"""The click scenario: ack latency of the Deploy, Roll back, Approve and Reject buttons while 4
deploys stream, against a bare Bolt app acking the same clicks.

One `robot run` process and one bare app (bench/lib/bare_app.py), each with its own fake Slack.
Before measuring (nothing timed): 4 streaming deploys start on the robot, each quick environment
gets two succeeded SHAs (so its root offers a Roll back button), and twice CLICKS deploys await
approval in environments that want one. Then CLICKS clicks of each button, kinds mixed, go in
batches of BATCH, batches alternating between the apps (which goes first alternates too).
Latency = the fake's send of the envelope → the fake's receipt of the ack. The bare app's acks
of the Deploy button are the Deploy button's baseline; the Deploy button is the others'.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections import Counter
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
    send_batch,
    stream_argv,
    streams_running,
)
from bench.lib.app_process import AppProcess, bare_argv, process_env, robot_argv, robot_config
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.support.harness import make_git_repo
from tests.support.wait import wait_for

APPROVER = "U0BENCHAP"
CHANNEL = "C0API"
APPROVAL_ENVS = ("a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8")
SETTLE_SECONDS = 60.0
DEPLOY_KIND, ROLLBACK_KIND, APPROVE_KIND, REJECT_KIND = "Deploy", "Roll back", "Approve", "Reject"
KINDS = (DEPLOY_KIND, ROLLBACK_KIND, APPROVE_KIND, REJECT_KIND)


@dataclass(frozen=True)
class Click:
    """One button click of the mix: which button, its action id and value."""

    kind: str
    action_id: str
    value: str


@dataclass
class ClickResult:
    """Each button's ack samples on the robot, and the bare app's acks of the same clicks."""

    clicks: int
    batch: int
    robot: dict[str, list[Sample]] = field(default_factory=lambda: {k: [] for k in KINDS})
    bare: dict[str, list[Sample]] = field(default_factory=lambda: {k: [] for k in KINDS})
    notes: list[str] = field(default_factory=list)


def measure_clicks(
    root: Path, github: FakeGitHub, clicks: int, batch: int, lines_per_burst: int
) -> ClickResult:
    """``clicks`` clicks of each button, ``batch`` at a time (kinds mixed), while 4 deploys stream."""
    shas = [github.add_repo(REPO)] + [github.push(REPO, "main") for _ in range(SHAS - 1)]
    pairs = [(sha, env) for env in APPROVAL_ENVS for sha in shas]
    deploy_pairs = [(sha, env) for env in QUICK_ENVS for sha in shas[2:]]
    if 2 * clicks > len(pairs) or clicks > len(deploy_pairs):
        raise ValueError(f"at most {min(len(pairs) // 2, len(deploy_pairs))} clicks of each button")
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
    env = process_env(root / "pycache")
    with FakeSlack() as robot_slack, FakeSlack() as bare_slack:
        config = robot_config(
            root / "robot",
            github.url,
            robot_slack,
            repos,
            workers=len(STREAM_ENVS) + 2,
            ping_interval=PING_INTERVAL,
        )
        database = config.parent / "robot.db"
        robot = AppProcess("robot", robot_slack, robot_argv(config), env, root / "robot.log")
        bare = AppProcess("bare", bare_slack, bare_argv(bare_slack, PING_INTERVAL), env, root / "bare.log")
        with robot.start(CONNECT_SECONDS), bare.start(CONNECT_SECONDS):
            streams = [Command("deploy", "/deploy", f"{REPO} to {e}") for e in STREAM_ENVS]
            if any(s.latency is None for s in send_batch(robot_slack, streams, BATCH_ACK_SECONDS)):
                raise RuntimeError(f"the stream deploys were not acked: {robot.log_tail()}")
            wanted = len(STREAM_ENVS)
            wait_for(
                lambda: streams_running(github) == wanted, STREAMS_RUNNING_SECONDS, "streams", interval=0.1
            )
            rollbacks = _rollback_targets(robot_slack, database, shas[:2], result)
            requests = [
                Command("request", "/deploy", f"{REPO}@{sha} to {e}") for sha, e in pairs[: 2 * clicks]
            ]
            for first in range(0, len(requests), batch):
                send_batch(robot_slack, requests[first : first + batch], BATCH_ACK_SECONDS)
            ids = _awaiting_ids(database, 2 * clicks)
            mix = _mix(clicks, deploy_pairs, rollbacks, ids)
            for first in range(0, len(mix), batch):
                chunk = mix[first : first + batch]
                order = [(bare, result.bare), (robot, result.robot)]
                for app, samples in order if (first // batch) % 2 == 0 else order[::-1]:
                    for click, sample in zip(chunk, _send(app.slack, chunk), strict=True):
                        samples[click.kind].append(sample)
            result.notes.append(_outcomes(database, ids, clicks))
        result.notes.append(f"robot exit {robot.exit_code}, bare app exit {bare.exit_code}")
        for fake in (robot_slack, bare_slack):
            result.notes.extend(f"fake Slack error: {e[-300:]}" for e in fake.server_errors)
    return result


def _rollback_targets(slack: FakeSlack, database: Path, shas: list[str], result: ClickResult) -> list[str]:
    """Deploy two SHAs to each quick environment (not measured); the Roll back buttons their roots
    then offer, read from the robot's store (each click names a real target: it queues a rollback,
    or is deduped or refused as out of date, like a real burst of clicks on one button)."""
    for sha in shas:
        deploys = [Command("setup", "/deploy", f"{REPO}@{sha} to {e}") for e in QUICK_ENVS]
        send_batch(slack, deploys, BATCH_ACK_SECONDS)
        _wait_deployed(database, sha)
    values = rollback_values(database, REPO, QUICK_ENVS)
    result.notes.append(
        f"Roll back clicks name the targets of {len(values)} of {len(QUICK_ENVS)} environments "
        "(read from the robot's store, as its roots show them)"
    )
    return values


def _wait_deployed(database: Path, sha: str) -> None:
    """Until ``sha`` succeeded in every quick environment (at most SETTLE_SECONDS; then measured
    with the targets there are, and the note says how many)."""
    with contextlib.suppress(AssertionError):
        wait_for(lambda: _succeeded(database, sha) == len(QUICK_ENVS), SETTLE_SECONDS, f"{sha[:7]} deployed")


def _succeeded(database: Path, sha: str) -> int:
    from bot.models import DeployState
    from bot.store import SqlStore

    store = SqlStore.from_url(f"sqlite:///{database}", upgrade=False)
    try:
        done = store.list_deploys(REPO, states=[DeployState.SUCCEEDED], limit=1000)
        return sum(1 for d in done if d.sha == sha and d.env in QUICK_ENVS)
    finally:
        store.close()


def rollback_values(database: Path, repo: str, envs: tuple[str, ...]) -> list[str]:
    """The Roll back buttons the robot's roots show now: one per environment that has a target."""
    from bot.slack.ids import encode_rollback_value
    from bot.store import SqlStore

    store = SqlStore.from_url(f"sqlite:///{database}", upgrade=False)
    try:
        values = []
        for env in envs:
            choice = store.rollback_choice(repo, env)
            if choice.current is not None and choice.target is not None:
                values.append(encode_rollback_value(repo, env, choice.target.sha, choice.current.id))
        return values
    finally:
        store.close()


def _mix(clicks: int, deploys: list[tuple[str, str]], rollbacks: list[str], ids: list[int]) -> list[Click]:
    """``clicks`` of each button, shuffled: Deploy buttons of distinct SHA/env, Roll back buttons
    of the targets there are, Approve and Reject of distinct deploys awaiting approval."""
    from bot.slack.ids import (
        APPROVE_ACTION,
        REJECT_ACTION,
        ROLLBACK_ACTION,
        deploy_action_id,
        encode_deploy_value,
    )

    mix = [
        Click(DEPLOY_KIND, deploy_action_id(env), encode_deploy_value(REPO, env, sha))
        for sha, env in deploys[:clicks]
    ]
    if rollbacks:
        mix += [Click(ROLLBACK_KIND, ROLLBACK_ACTION, rollbacks[n % len(rollbacks)]) for n in range(clicks)]
    mix += [Click(APPROVE_KIND, APPROVE_ACTION, str(i)) for i in ids[:clicks]]
    mix += [Click(REJECT_KIND, REJECT_ACTION, str(i)) for i in ids[clicks : 2 * clicks]]
    random.Random(11).shuffle(mix)
    return mix


def _send(slack: FakeSlack, clicks: list[Click]) -> list[Sample]:
    """Send every click at once (Approve / Reject as the approver), then collect each (empty) ack."""
    sent = [
        (
            click,
            slack.send_block_action(
                click.action_id,
                click.value,
                user_id=APPROVER if click.kind in (APPROVE_KIND, REJECT_KIND) else USER,
                channel_id=CHANNEL,
            ),
        )
        for click in clicks
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


def _awaiting_ids(database: Path, want: int) -> list[int]:
    """The ids of the deploys awaiting approval, once ``want`` of them are recorded."""
    from bot.models import DeployState
    from bot.store import SqlStore

    store = SqlStore.from_url(f"sqlite:///{database}", upgrade=False)
    found: list[int] = []

    def enough() -> bool:
        awaiting = store.list_deploys(REPO, states=[DeployState.AWAITING_APPROVAL], limit=1000)
        found[:] = [d.id for d in awaiting]
        return len(found) >= want

    try:
        wait_for(enough, SETTLE_SECONDS, f"{want} deploys awaiting approval")
    finally:
        store.close()
    return sorted(found)


def _outcomes(database: Path, ids: list[int], clicks: int) -> str:
    """What the clicks did: the Approve clicks' deploys approved, the Reject clicks' rejected."""
    from bot.models import DeployState
    from bot.store import SqlStore

    store = SqlStore.from_url(f"sqlite:///{database}", upgrade=False)
    started = time.monotonic()
    states: list[Any] = []

    def settled() -> bool:
        states[:] = [store.get_deploy(i) for i in ids]
        return not any(d is None or d.state is DeployState.AWAITING_APPROVAL for d in states)

    try:
        wait_for(settled, SETTLE_SECONDS, "every clicked deploy decided", interval=0.2)
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
