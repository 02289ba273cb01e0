"""Rollbacks as users make them: `/deploy rollback`, the Roll back button, `robot deploy --rollback`.

Through the real robot (Bolt, Socket Mode, PyGithub, SQLite) against the fake Slack and GitHub,
and the CLI as a real process.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tests.unit.test_rollback as contract
from bot.models import ROLLBACK_MARK, DeployState
from bot.slack.ids import ROLLBACK_ACTION, decode_rollback_value
from bot.store import SqlStore
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack, Message
from tests.support.harness import make_git_repo, run_cli, write_config
from tests.support.postgres import PostgresServer
from tests.support.rig import CHANNEL, WAIT, RobotRig, deployment_of

pytestmark = pytest.mark.slow  # `robot run` and `robot deploy` against the fake Slack and GitHub

PY = sys.executable
REPO = "acme/api"
ALICE = "U0ALICE01"
# Fails while the file `fail` is in the checkout: the same step deploys one SHA and not the next.
STEP = [PY, "-c", "import os, sys; sys.exit(3 if os.path.exists('fail') else 0)"]


@pytest.fixture
def rig(tmp_path: Path, github: FakeGitHub, slack: FakeSlack) -> Iterator[RobotRig]:
    github.add_repo(REPO)
    checkout = make_git_repo(tmp_path / "checkout")
    envs = {"production": {"folder": str(checkout), "commands": [STEP]}}
    repos = {
        REPO: {
            "channel": CHANNEL,
            "environments": envs,
            "required_contexts": ["ci/test"],
            "deployers": [ALICE],
        }
    }
    with RobotRig(tmp_path, github, slack, repos, checkout=checkout) as robot:
        yield robot


def deploy_green(rig: RobotRig, github: FakeGitHub, state: DeployState = DeployState.SUCCEEDED) -> int:
    """Push a commit with green CI and deploy it by command; its deploy id once it ended ``state``."""
    sha = github.push(REPO, "main")
    github.set_status(REPO, sha, "ci/test", "success")
    answer = rig.command(f"{REPO}@{sha} to production")
    assert answer.startswith("Deploy #"), answer
    deploy_id = int(answer.split("#")[1].split()[0])
    rig.agree(deploy_id, state, "success" if state is DeployState.SUCCEEDED else "failure")
    return deploy_id


def roll_back_button(message: Message) -> dict[str, Any] | None:
    """The Roll back button of a root message, if it has one."""
    for block in message.blocks:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if element.get("action_id") == ROLLBACK_ACTION:
                found: dict[str, Any] = element
                return found
    return None


def status_text(slack: FakeSlack, text: str = "") -> str:
    """`/deploy-status` blocks as one searchable string."""
    envelope = slack.send_slash_command(
        command="/deploy-status", text=text, user_id=ALICE, channel_id="C0HERE"
    )
    payload = slack.wait_ack(envelope, timeout=WAIT).payload or {}
    if str(payload.get("text", "")).startswith("⏳"):
        payload = slack.wait_response(envelope, timeout=WAIT)
    return json.dumps(payload.get("blocks", []), ensure_ascii=False)


def test_rollback_by_command_skips_the_gate_and_a_second_goes_further_back(
    rig: RobotRig, github: FakeGitHub
) -> None:
    a, b, c = (deploy_green(rig, github) for _ in range(3))
    sha_a, sha_b, sha_c = (rig.deploy(i).sha for i in (a, b, c))
    # The old SHAs' CI went red since (a flaky suite, a revoked check): they still roll back.
    github.set_status(REPO, sha_a, "ci/test", "failure")
    github.set_status(REPO, sha_b, "ci/test", "failure")
    answer = rig.command(f"rollback {REPO} to production")
    assert answer == (
        f"⏪ Rollback #4 queued: {REPO} → production back to {sha_b[:7]} (undoing #{c}); "
        "no CI gate (it succeeded there)."
    )
    first = rig.agree(4, DeployState.SUCCEEDED, "success")
    assert (first.sha, first.rollback_of) == (sha_b, c)
    deployment = deployment_of(github, first)
    assert deployment is not None and deployment.ref == sha_b
    assert deployment.required_contexts == [] and deployment.payload["rollback_of"] == c
    normal = deployment_of(github, rig.deploy(c))
    assert normal is not None and normal.required_contexts == ["ci/test"]
    assert "rollback_of" not in normal.payload
    rig.wait_root_text(4, f"{ROLLBACK_MARK} of #{c}")
    # Rolled back from C to B: the next rollback goes to A, never forward to C.
    second = rig.command(f"rollback {REPO}")
    assert second.startswith(f"⏪ Rollback #5 queued: {REPO} → production back to {sha_a[:7]} (undoing #4)")
    assert rig.agree(5, DeployState.SUCCEEDED, "success").sha == sha_a
    assert sha_c not in [d.sha for d in rig.store.list_deploys(limit=2)]
    history = status_text(rig.slack, REPO)
    assert f"#5 *acme/api → production* `{sha_a[:7]}` {ROLLBACK_MARK}" in history
    assert f"#{c} *acme/api → production* `{sha_c[:7]}` {ROLLBACK_MARK}" not in history
    third = rig.command(f"rollback {REPO}")
    assert third == (
        f"⚠️ Nothing to roll back to in {REPO} production: {sha_a[:7]} is current and every other SHA "
        f"that succeeded there was rolled back from already ({sha_b[:7]}, {sha_c[:7]})."
    )


def test_roll_back_buttons_on_a_succeeded_and_on_a_failed_root(rig: RobotRig, github: FakeGitHub) -> None:
    a = deploy_green(rig, github)
    assert roll_back_button(rig.wait_root_text(a, "succeeded")) is None  # nothing before it
    b = deploy_green(rig, github)
    sha_a, sha_b = rig.deploy(a).sha, rig.deploy(b).sha
    root = rig.wait_root_text(b, ROLLBACK_ACTION)
    button = roll_back_button(root)
    assert button is not None and button["text"]["text"] == f"Roll back to {sha_a[:7]}"
    assert decode_rollback_value(button["value"]) == (REPO, "production", sha_a, b)
    assert button["confirm"]["title"]["text"] == f"Roll back to {sha_a[:7]}?"
    assert f"undoing deploy #{b}" in button["confirm"]["text"]["text"]
    answer = rig.click(ROLLBACK_ACTION, button["value"], message_ts=root.ts)
    assert answer.startswith(f"⏪ Rollback #3 queued: {REPO} → production back to {sha_a[:7]} (undoing #{b})")
    rollback = rig.agree(3, DeployState.SUCCEEDED, "success")
    assert (rollback.sha, rollback.rollback_of) == (sha_a, b)
    late = rig.click(ROLLBACK_ACTION, button["value"], message_ts=root.ts)
    assert late.startswith(f"⚠️ {REPO} production moved on since this Roll back button was shown")
    # A deploy that fails halfway may leave hosts half-updated: its root offers the good SHA.
    assert rig.checkout is not None
    (rig.checkout / "fail").touch()
    failed = deploy_green(rig, github, DeployState.FAILED)
    (rig.checkout / "fail").unlink()
    root = rig.wait_root_text(failed, ROLLBACK_ACTION)
    button = roll_back_button(root)
    assert button is not None and button["text"]["text"] == f"Roll back to {sha_a[:7]}"
    assert decode_rollback_value(button["value"]) == (REPO, "production", sha_a, failed)
    assert "queued" in rig.click(ROLLBACK_ACTION, button["value"], message_ts=root.ts)
    again = rig.agree(failed + 1, DeployState.SUCCEEDED, "success")
    assert (again.sha, again.rollback_of) == (sha_a, failed)
    assert sha_b != again.sha


def test_rollback_refusals(rig: RobotRig, github: FakeGitHub) -> None:
    a = deploy_green(rig, github)
    sha_a = rig.deploy(a).sha
    assert rig.command(f"rollback {REPO}") == (
        f"⚠️ Nothing to roll back to in {REPO} production: {sha_a[:7]} is the only SHA that succeeded there."
    )
    deploy_green(rig, github)
    refused = rig.command(f"rollback {REPO}", user="U0MALLORY")
    assert refused.startswith(f"⚠️ You may not roll back {REPO}. Allowed: ") and f"<@{ALICE}>" in refused
    assert "locked" in rig.command(f"lock {REPO} : incident", user=ALICE)
    locked = rig.command(f"rollback {REPO}")
    assert locked.startswith(f"⚠️ {REPO} production is locked by slack:{ALICE}") and "incident" in locked
    assert [d.id for d in rig.store.list_deploys()] == [2, 1]


def test_robot_deploy_rollback_from_the_terminal(tmp_path: Path, github: FakeGitHub) -> None:
    github.add_repo(REPO)
    checkout = make_git_repo(tmp_path / "checkout")
    envs = {"production": {"folder": str(checkout), "commands": [["true"]]}}
    config = write_config(
        tmp_path, github.url, {REPO: {"environments": envs, "required_contexts": ["ci/test"]}}
    )
    shas = []
    for _ in range(2):
        sha = github.push(REPO, "main")
        github.set_status(REPO, sha, "ci/test", "success")
        assert run_cli(config, "deploy", f"{REPO}@{sha}").returncode == 0
        shas.append(sha)
    github.set_status(REPO, shas[0], "ci/test", "failure")
    done = run_cli(config, "deploy", REPO, "--rollback", "--env", "production")
    assert done.returncode == 0, done.stderr
    assert (
        f"⏪ Rollback #3 queued: {REPO} → production back to {shas[0][:7]} (undoing #2; no CI gate"
        in done.stdout
    )
    assert "✅ succeeded" in done.stdout
    rollback = next(d for d in github.deployments(REPO) if d.payload.get("robot_deploy_id") == 3)
    assert rollback.ref == shas[0] and rollback.required_contexts == []
    assert rollback.payload["rollback_of"] == 2
    status = run_cli(config, "status")
    row = next(line for line in status.stdout.splitlines() if line.startswith("3 "))
    assert ROLLBACK_MARK in row and shas[0][:7] in row
    nothing = run_cli(config, "deploy", REPO, "--rollback")
    assert nothing.returncode == 2 and nothing.stdout == ""
    assert nothing.stderr == (
        f"robot: Nothing to roll back to in {REPO} production: {shas[0][:7]} is current and every other "
        f"SHA that succeeded there was rolled back from already ({shas[1][:7]}).\n"
    )
    for bad in (
        run_cli(config, "deploy", f"{REPO}@main", "--rollback"),
        run_cli(config, "deploy", REPO, "--rollback", "--force"),
    ):
        assert bad.returncode == 2 and bad.stderr.startswith("robot: --rollback ")
    assert len(github.deployments(REPO)) == 3


@pytest.mark.parametrize(
    "check",
    [
        contract.test_no_history_and_one_sha_have_nothing_to_roll_back_to,
        contract.test_a_second_rollback_goes_further_back_never_forward,
        contract.test_only_a_succeeded_rollback_marks_its_sha_undone,
        contract.test_a_sha_rolled_back_from_stays_skipped_when_deployed_again,
    ],
)
def test_target_selection_on_postgresql(pg_server: PostgresServer, check: Any) -> None:
    """The unit tier's target-selection contract, on a real PostgreSQL."""
    store = SqlStore.from_url(pg_server.new_database())
    try:
        check(store)
    finally:
        store.close()
