"""Locks that expire, through `robot run` as users drive it: `/deploy lock … for <duration>`
against the fake Slack and GitHub; the channel is told of each expiry once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.models import DeployState
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.support.harness import make_git_repo
from tests.support.rig import CHANNEL, WAIT, RobotRig, runs, step_command
from tests.support.wait import wait_for

pytestmark = pytest.mark.slow  # `robot run` against the fake Slack and GitHub

API = "acme/api"
UNLOCKED = "🔓 acme/api production unlocked:"


@pytest.fixture
def rig_for(tmp_path: Path, github: FakeGitHub, slack: FakeSlack) -> Iterator[Any]:
    rigs: list[RobotRig] = []

    def make(**step: object) -> RobotRig:
        github.add_repo(API)
        checkout = make_git_repo(tmp_path / "checkout")
        envs = {"production": {"folder": str(checkout), "commands": [step_command(checkout, **step)]}}
        rig = RobotRig(
            tmp_path, github, slack, {API: {"channel": CHANNEL, "environments": envs}}, checkout=checkout
        )
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.stop()


def blocks(rig: RobotRig, command: str, text: str) -> str:
    """A slash command's answer blocks as one searchable string."""
    envelope = rig.slack.send_slash_command(
        command=command, text=text, user_id="U0ALICE01", channel_id="C0HERE"
    )
    payload = rig.slack.wait_ack(envelope, timeout=WAIT).payload or {}
    if str(payload.get("text", "")).startswith("⏳"):
        payload = rig.slack.wait_response(envelope, timeout=WAIT)
    return json.dumps(payload.get("blocks"), ensure_ascii=False)


def said(slack: FakeSlack, text: str) -> list[str]:
    """The robot's channel messages containing ``text``."""
    return [m.text for m in slack.messages(CHANNEL) if text in m.text]


def test_a_lock_for_a_while_shows_what_is_left_then_expires_and_says_so_once(rig_for: Any) -> None:
    rig: RobotRig = rig_for()
    answer = rig.command("lock acme/api for 8s : db migration", user="U0BOB0001")
    locked_at = time.monotonic()
    assert answer.startswith("🔒 acme/api production is locked for 8 s: db migration."), answer
    where = blocks(rig, "/deploy", "where acme/api")
    assert "<@U0BOB0001>" in where and " more · db migration" in where, where
    status = blocks(rig, "/deploy-status", "")
    assert " s more · db migration" in status, status
    refused = rig.command("acme/api")
    assert "locked by slack:U0BOB0001" in refused and " s more: db migration" in refused, refused
    assert time.monotonic() - locked_at < 8, "the machine was too slow to look before the expiry"

    wait_for(lambda: said(rig.slack, UNLOCKED) != [], WAIT, "the expiry to be told")
    told = time.monotonic() - locked_at
    assert said(rig.slack, UNLOCKED) == [
        "🔓 acme/api production unlocked: <@U0BOB0001>'s lock for 8 s expired (db migration)"
    ]
    assert 7.5 < told < 8 + 5, f"told {told:.1f} s after locking"
    assert rig.command("acme/api").startswith("Deploy #1 queued")
    assert rig.final(1).state is DeployState.SUCCEEDED
    assert "No locks." in blocks(rig, "/deploy-status", "")
    time.sleep(2.5)  # a few more expiry ticks
    assert len(said(rig.slack, UNLOCKED)) == 1
    history = rig.robot.core.store.lock_history(API, "production")  # type: ignore[attr-defined]
    assert [(e.action, e.actor) for e in history] == [
        ("unlocked", "robot:robot"),
        ("locked", "slack:U0BOB0001"),
    ]


def test_a_bad_duration_is_refused_with_the_valid_forms(rig_for: Any) -> None:
    rig: RobotRig = rig_for()
    answer = rig.command("lock acme/api for 2w : holidays")
    assert answer.startswith("⚠️ `2w` is not a lock duration; use a number of days, hours, minutes or seconds")
    assert "`30m`, `2h`, `1d`, `1h30m`, `90s` (at most 30 days)" in answer
    too_long = rig.command("lock acme/api for 45d")
    assert "`45d` is longer than 30 days" in too_long and "lock without `for`" in too_long
    assert rig.store.list_locks() == []
    assert rig.command("acme/api").startswith("Deploy #1 queued")


def test_a_deploy_queued_behind_a_lock_runs_once_it_expires(rig_for: Any, github: FakeGitHub) -> None:
    rig: RobotRig = rig_for()
    checkout = rig.checkout
    assert checkout is not None
    (checkout / "hold").touch()
    rig.command("acme/api")
    wait_for(lambda: runs(checkout) == ["start 1"], WAIT, "deploy #1 to start")
    github.push(API, "main")
    assert rig.command("acme/api").startswith("Deploy #2 queued")
    rig.command("lock acme/api for 5s : hold the next one")
    (checkout / "hold").unlink()
    assert rig.final(1).state is DeployState.SUCCEEDED
    time.sleep(1)
    assert rig.deploy(2).state is DeployState.QUEUED, "held by the lock"
    wait_for(lambda: said(rig.slack, UNLOCKED) != [], WAIT, "the expiry to be told")
    told = time.monotonic()
    rig.wait_state(2, DeployState.RUNNING)
    # The release wakes this robot's workers, as an unlock does (not the 10 s safety net).
    assert time.monotonic() - told < 5
    assert rig.final(2).state is DeployState.SUCCEEDED
    assert len(said(rig.slack, UNLOCKED)) == 1
