"""Where approvals meet rollbacks, change lists and break glass, as users meet them: `robot run`
against the fake Slack and GitHub (commands, clicks), and `robot deploy` as a real process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.models import ROLLBACK_MARK, DeployState
from bot.slack.blocks.replies import error_text
from bot.slack.commands import ROLLBACK_NO_FORCE
from bot.slack.ids import APPROVE_ACTION, REJECT_ACTION, ROLLBACK_ACTION
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack, Message
from tests.support.harness import make_git_repo, run_cli, write_config
from tests.support.rig import CHANNEL, RobotRig, deployment_of

pytestmark = pytest.mark.slow  # `robot run` and `robot deploy` against the fake Slack and GitHub

REPO = "acme/api"
ALICE, ANN, BREAKER = "U0ALICE01", "U0ANN0001", "U0BRK0001"


@pytest.fixture
def rig(tmp_path: Path, github: FakeGitHub, slack: FakeSlack) -> Iterator[RobotRig]:
    """acme/api production: CI-gated, one approval from ANN, BREAKER on the force list."""
    github.add_repo(REPO)
    checkout = make_git_repo(tmp_path / "checkout")
    production = {"folder": str(checkout), "commands": [["true"]], "approvals": {"approvers": [ANN]}}
    repos = {
        REPO: {
            "channel": CHANNEL,
            "environments": {"production": production},
            "required_contexts": ["ci/test"],
            "force": [BREAKER],
            "on_merge": "ignore",
        }
    }
    with RobotRig(tmp_path, github, slack, repos, checkout=checkout) as made:
        yield made


def blocks(message: Message) -> str:
    return json.dumps(message.blocks, ensure_ascii=False)


def broken_glass(rig: RobotRig, github: FakeGitHub, deploy_id: int) -> str:
    """Push a commit and deploy it with `!` (BREAKER): it succeeds with neither gate nor approval."""
    sha = github.push(REPO, "main")
    answer = rig.command(f"{REPO}@{sha}!", BREAKER)
    assert answer.startswith(f"Deploy #{deploy_id} queued"), answer
    rig.agree(deploy_id, DeployState.SUCCEEDED, "success")
    return sha


def test_a_deploy_awaiting_approval_shows_its_changes_before_anyone_approves(
    rig: RobotRig, github: FakeGitHub
) -> None:
    broken_glass(rig, github, 1)
    head = github.push(REPO, "main")
    github.set_status(REPO, head, "ci/test", "success")
    answer = rig.command(f"{REPO}@{head}", ALICE)
    assert answer.startswith("Deploy #2 awaits approval"), answer
    root = blocks(rig.wait_root_text(2, "Changes: 1 commit since"))
    assert rig.deploy(2).state is DeployState.AWAITING_APPROVAL
    assert "Awaiting approval (0/1)" in root and APPROVE_ACTION in root and "(deploy #1," in root
    assert github.count("GET", "/compare/") == 1
    assert rig.click(APPROVE_ACTION, "2", ANN).startswith("✅ Approved")
    rig.agree(2, DeployState.SUCCEEDED, "success")
    assert "Changes: 1 commit since" in blocks(rig.root(2))
    assert github.count("GET", "/compare/") == 1, "the claim reuses the cached compare"


def test_a_rollback_command_waits_for_approval(rig: RobotRig, github: FakeGitHub) -> None:
    first = broken_glass(rig, github, 1)
    broken_glass(rig, github, 2)
    github.set_status(REPO, first, "ci/test", "failure")  # red since: a rollback is not gated
    answer = rig.command(f"rollback {REPO}", ALICE)
    assert answer == (
        f"⏪ Rollback #3 awaits approval: {REPO} → production back to {first[:7]} (undoing #2); "
        "no CI gate (it succeeded there); its message says who may approve."
    )
    root = blocks(rig.wait_root_text(3, "Awaiting approval (0/1)"))
    assert APPROVE_ACTION in root and REJECT_ACTION in root and f"{ROLLBACK_MARK} of #2" in root
    rig.wait_root_text(3, "Changes: ⏪ goes back")
    assert deployment_of(github, rig.deploy(3)) is None  # nothing reaches GitHub before approval
    assert rig.click(APPROVE_ACTION, "3", ANN) == "✅ Approved: deploy #3 is queued (1 approval(s))."
    rollback = rig.agree(3, DeployState.SUCCEEDED, "success")
    assert (rollback.sha, rollback.rollback_of) == (first, 2)
    deployment = deployment_of(github, rollback)
    assert deployment is not None and deployment.ref == first and deployment.required_contexts == []
    assert deployment.payload["rollback_of"] == 2 and deployment.payload["approved_by"] == [ANN]


def test_a_roll_back_click_waits_for_approval_and_can_be_rejected(rig: RobotRig, github: FakeGitHub) -> None:
    first = broken_glass(rig, github, 1)
    broken_glass(rig, github, 2)
    root = rig.wait_root_text(2, ROLLBACK_ACTION)
    (button,) = [
        e
        for b in root.blocks
        if b.get("type") == "actions"
        for e in b["elements"]
        if e.get("action_id") == ROLLBACK_ACTION
    ]
    assert button["text"]["text"] == f"Roll back to {first[:7]}"
    answer = rig.click(ROLLBACK_ACTION, button["value"], ALICE, message_ts=root.ts)
    assert answer.startswith("⏪ Rollback #3 awaits approval"), answer
    assert APPROVE_ACTION in blocks(rig.wait_root_text(3, "Awaiting approval (0/1)"))
    assert rig.click(REJECT_ACTION, "3", ANN) == "🙅 Deploy #3 rejected: it will not run."
    rig.agree(3, DeployState.REJECTED, None)
    # Rejected undoes nothing: the button names the same target, and approved it runs.
    answer = rig.click(ROLLBACK_ACTION, button["value"], ALICE, message_ts=root.ts)
    assert answer.startswith("⏪ Rollback #4 awaits approval"), answer
    assert rig.command("approve 4", ANN) == "✅ Approved: deploy #4 is queued (1 approval(s))."
    rollback = rig.agree(4, DeployState.SUCCEEDED, "success")
    deployment = deployment_of(github, rollback)
    assert deployment is not None and deployment.ref == first and deployment.required_contexts == []
    assert deployment.payload["rollback_of"] == 2 and deployment.payload["approved_by"] == [ANN]


def test_break_glass_and_rollbacks(rig: RobotRig, github: FakeGitHub) -> None:
    first = broken_glass(rig, github, 1)
    root = blocks(rig.wait_root_text(1, "break glass"))
    assert f"*break glass*: CI gate and approval skipped by <@{BREAKER}>" in root
    assert APPROVE_ACTION not in root
    broken_glass(rig, github, 2)
    # A rollback has no `!`; the force list breaks glass by deploying the SHA itself.
    assert rig.command(f"rollback {REPO}!", BREAKER) == error_text(ROLLBACK_NO_FORCE)
    assert rig.command(f"rollback {REPO}", BREAKER).startswith("⏪ Rollback #3 awaits approval")
    assert rig.command("cancel 3", BREAKER).startswith("⛔")
    answer = rig.command(f"{REPO}@{first}!", BREAKER)
    assert answer.startswith("Deploy #4 queued"), answer
    assert rig.agree(4, DeployState.SUCCEEDED, "success").sha == first


def test_robot_deploy_rollback_needs_a_named_approver(tmp_path: Path, github: FakeGitHub) -> None:
    github.add_repo(REPO)
    checkout = make_git_repo(tmp_path / "checkout")
    production = {"folder": str(checkout), "commands": [["true"]], "approvals": {"approvers": [ANN]}}
    config = write_config(
        tmp_path,
        github.url,
        {REPO: {"environments": {"production": production}, "required_contexts": ["ci/test"]}},
    )
    shas = []
    for _ in range(2):
        sha = github.push(REPO, "main")
        github.set_status(REPO, sha, "ci/test", "success")
        done = run_cli(config, "deploy", f"{REPO}@{sha}", "--approved-by", "ann")
        assert done.returncode == 0, done.stdout + done.stderr
        shas.append(sha)
    github.set_status(REPO, shas[0], "ci/test", "failure")
    refused = run_cli(config, "deploy", REPO, "--rollback")
    assert refused.returncode != 0
    assert f"{REPO} production needs approval: name its approver with --approved-by NAME." in refused.stderr
    done = run_cli(config, "deploy", REPO, "--rollback", "--approved-by", "ann")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"⏪ Rollback #3 queued: {REPO} → production back to {shas[0][:7]} (undoing #2" in done.stdout
    assert "✅ succeeded" in done.stdout
    rollback = next(d for d in github.deployments(REPO) if d.payload.get("robot_deploy_id") == 3)
    assert rollback.ref == shas[0] and rollback.required_contexts == []
    assert rollback.payload["rollback_of"] == 2 and rollback.payload["approved_by"] == ["ann"]
    status = run_cli(config, "status")
    assert "approved by cli:ann" in status.stdout and ROLLBACK_MARK in status.stdout, status.stdout
