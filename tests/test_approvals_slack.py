"""Approvals as users meet them: `robot run` against the fake Slack and GitHub, with clicks on
the root's Approve / Reject buttons and `/deploy approve|reject` commands."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.models import DeployState
from bot.slack.ids import APPROVE_ACTION, CANCEL_ACTION, REJECT_ACTION
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.support.harness import make_git_repo
from tests.support.rig import CHANNEL, RobotRig, deployment_of

pytestmark = pytest.mark.slow  # `robot run` against the fake Slack and GitHub

PY = sys.executable
ALICE, ANN, BOB, EVE, BREAKER = "U0ALICE01", "U0ANN0001", "U0BOB0001", "U0EVE0001", "U0BRK0001"


@pytest.fixture
def rig_for(tmp_path: Path, github: FakeGitHub, slack: FakeSlack) -> Iterator[Any]:
    """A robot whose acme/api production wants approvals (from ANN and BOB unless told)."""
    rigs: list[RobotRig] = []

    def make(**approvals: Any) -> RobotRig:
        github.add_repo("acme/api")
        checkout = make_git_repo(tmp_path / "checkout")
        approvals.setdefault("approvers", [ANN, BOB])
        production = {"folder": str(checkout), "commands": [["echo", "deployed"]], "approvals": approvals}
        repos = {
            "acme/api": {"channel": CHANNEL, "environments": {"production": production}, "force": [BREAKER]}
        }
        rigs.append(RobotRig(tmp_path, github, slack, repos, checkout=checkout))
        return rigs[-1]

    yield make
    for rig in rigs:
        rig.stop()


def _requested(rig: RobotRig, text: str = "acme/api", user: str = ALICE) -> int:
    answer = rig.command(text, user)
    assert answer.startswith("Deploy #") and "awaits approval" in answer, answer
    deploy_id = int(answer.split("#", 1)[1].split(" ", 1)[0])
    assert rig.deploy(deploy_id).state is DeployState.AWAITING_APPROVAL
    return deploy_id


def _status_blocks(rig: RobotRig, user: str) -> str:
    """`/deploy-status`'s answer blocks as one searchable string."""
    envelope = rig.slack.send_slash_command(
        command="/deploy-status", text="", user_id=user, channel_id="C0HERE"
    )
    ack = rig.slack.wait_ack(envelope, timeout=30)
    payload: dict[str, Any] = dict(ack.payload or {})
    if str(payload.get("text", "")).startswith("⏳"):
        payload = dict(rig.slack.wait_response(envelope, timeout=30))
    return json.dumps(payload.get("blocks"), ensure_ascii=False)


def test_approve_click_queues_it_and_github_hears_who_approved(rig_for: Any, github: FakeGitHub) -> None:
    rig = rig_for()
    deploy_id = _requested(rig)
    root = json.dumps(rig.wait_root_text(deploy_id, "Awaiting approval").blocks, ensure_ascii=False)
    assert f"Awaiting approval (0/1) from <@{ANN}>, <@{BOB}>" in root
    assert APPROVE_ACTION in root and REJECT_ACTION in root and CANCEL_ACTION in root
    assert github.deployments("acme/api") == []  # nothing reaches GitHub before approval
    answer = rig.click(APPROVE_ACTION, str(deploy_id), ANN)
    assert answer == f"✅ Approved: deploy #{deploy_id} is queued (1 approval(s))."
    deploy = rig.agree(deploy_id, DeployState.SUCCEEDED, "success")
    deployment = deployment_of(github, deploy)
    assert deployment is not None and deployment.payload["approved_by"] == [ANN]
    root = json.dumps(rig.wait_root_text(deploy_id, "Approved (1/1)").blocks, ensure_ascii=False)
    assert f"Approved (1/1) by <@{ANN}>" in root and APPROVE_ACTION not in root


def test_reject_command_with_a_reason_ends_it_rejected(rig_for: Any, github: FakeGitHub) -> None:
    rig = rig_for()
    deploy_id = _requested(rig)
    answer = rig.command(f"reject {deploy_id} : not during the sale", BOB)
    assert answer == f"🙅 Deploy #{deploy_id} rejected: it will not run."
    deploy = rig.agree(deploy_id, DeployState.REJECTED, None)
    assert deploy.error == f"rejected by slack:{BOB}: not during the sale"
    rig.wait_root_text(deploy_id, "not during the sale")
    assert github.deployments("acme/api") == []


def test_reject_click(rig_for: Any) -> None:
    rig = rig_for()
    deploy_id = _requested(rig)
    assert (
        rig.click(REJECT_ACTION, str(deploy_id), ANN) == f"🙅 Deploy #{deploy_id} rejected: it will not run."
    )
    assert rig.agree(deploy_id, DeployState.REJECTED, None).error == f"rejected by slack:{ANN}"


def test_self_approval_and_non_approvers_are_refused(rig_for: Any) -> None:
    rig = rig_for(approvers=[ALICE, ANN])
    deploy_id = _requested(rig)
    own = rig.click(APPROVE_ACTION, str(deploy_id), ALICE)
    assert own == f"⚠️ You requested deploy #{deploy_id}: someone else must approve it."
    stranger = rig.command(f"approve {deploy_id}", EVE)
    assert stranger.startswith("⚠️ You may not approve deploys to production of acme/api."), stranger
    assert rig.deploy(deploy_id).state is DeployState.AWAITING_APPROVAL
    assert rig.store.list_approvals([deploy_id]) == {}


def test_two_approvals_from_two_people_and_a_double_approve_counts_once(
    rig_for: Any, github: FakeGitHub
) -> None:
    rig = rig_for(required=2)
    deploy_id = _requested(rig)
    first = rig.click(APPROVE_ACTION, str(deploy_id), ANN)
    assert first == f"✅ Approved (1 so far): deploy #{deploy_id} needs more approvals."
    again = rig.command(f"approve {deploy_id}", ANN)
    assert again == f"You approved deploy #{deploy_id} already; approvals count once (1 so far)."
    rig.wait_root_text(deploy_id, "Awaiting approval (1/2)")
    assert github.deployments("acme/api") == []
    status = _status_blocks(rig, BOB)
    assert "*Awaiting approval*" in status and f"✋ #{deploy_id}" in status
    assert f"1/2 from <@{ANN}>, <@{BOB}> · approved by <@{ANN}>" in status
    second = rig.click(APPROVE_ACTION, str(deploy_id), BOB)
    assert second == f"✅ Approved: deploy #{deploy_id} is queued (2 approval(s))."
    deploy = rig.agree(deploy_id, DeployState.SUCCEEDED, "success")
    deployment = deployment_of(github, deploy)
    assert deployment is not None and deployment.payload["approved_by"] == [ANN, BOB]


def test_no_decision_in_time_expires_it(rig_for: Any, github: FakeGitHub) -> None:
    rig = rig_for(timeout=0.5)
    deploy_id = _requested(rig)
    deploy = rig.agree(deploy_id, DeployState.EXPIRED, None)
    assert deploy.error == "not approved in time"
    late = rig.click(APPROVE_ACTION, str(deploy_id), ANN)
    assert late == f"⚠️ Deploy #{deploy_id} is expired; it awaits no approval."
    assert github.deployments("acme/api") == []


def test_break_glass_skips_gate_and_approval(rig_for: Any, github: FakeGitHub) -> None:
    rig = rig_for()
    answer = rig.command("acme/api!", BREAKER)
    assert answer.startswith("Deploy #1 queued"), answer
    rig.agree(1, DeployState.SUCCEEDED, "success")
    root = json.dumps(rig.wait_root_text(1, "break glass").blocks, ensure_ascii=False)
    assert f"*break glass*: CI gate and approval skipped by <@{BREAKER}>" in root
    refused = rig.command("acme/api@main!", ANN)
    assert refused.startswith("⚠️ You may not force a deploy of acme/api"), refused
