"""Approvals for protected environments: the service's rules over the memory fakes."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from bot.approvals import approval_view
from bot.cli import _status_row
from bot.config import load_settings
from bot.deploys import DeployService
from bot.errors import AccessDenied, ApprovalRequired, BadCommand, ConfigError, UnknownDeploy
from bot.models import Actor, ActorKind, ApprovalView, DeployState, Source
from bot.slack.blocks.thread import root_message
from bot.slack.chatops import Caller, ChatOps
from bot.slack.commands import ApproveCommand, RejectCommand, parse_deploy, parse_status
from bot.slack.ids import APPROVE_ACTION, CANCEL_ACTION, REJECT_ACTION
from tests.fakes.memory import RecordingObserver
from tests.support.harness import environ, slack_user, write_config
from tests.support.wait import wait_for
from tests.unit.conftest import API, World, WorldFactory, commands_env

REQUESTER, ANN, BOB, EVE, BREAKER = "U0REQ0001", "U0ANN0001", "U0BOB0001", "U0EVE0001", "U0BRK0001"


def protected(folder: Path, **approvals: Any) -> dict[str, Any]:
    """acme/api: production wants approvals (ANN and BOB by default), staging none."""
    approvals.setdefault("approvers", [ANN, BOB])
    envs = {"production": commands_env(folder, approvals=approvals), "staging": commands_env(folder)}
    return {API: {"environments": envs, "force": [BREAKER]}}


def chatops(world: World) -> ChatOps:
    return ChatOps(world.service, approval_view=partial(approval_view, world.settings, world.store))


def awaiting(world: World, user: str = REQUESTER) -> int:
    deploy = world.request(API, env="production", user=user)
    assert deploy.state is DeployState.AWAITING_APPROVAL
    return deploy.id


def test_nothing_reaches_github_before_approval_and_approved_by_is_in_the_payload(
    world_for: WorldFactory, tmp_path: Path
) -> None:
    world = world_for(protected(tmp_path / "checkout"))
    deploy_id = awaiting(world)
    world.service.start()
    assert world.service.get(deploy_id).state is DeployState.AWAITING_APPROVAL
    assert world.github.deployments_of(API) == [] and not world.runner.started.is_set()
    reply = chatops(world).click_approve(str(deploy_id), Caller(ANN))
    assert reply.text == f"✅ Approved: deploy #{deploy_id} is queued (1 approval(s))."
    final = world.wait_final(deploy_id)
    assert final.state is DeployState.SUCCEEDED, final.error
    (deployment,) = world.github.deployments_of(API)
    assert deployment.payload["approved_by"] == [ANN]
    assert world.observer.states(deploy_id)[:3] == [
        DeployState.AWAITING_APPROVAL,
        DeployState.QUEUED,
        DeployState.RUNNING,
    ]
    assert f"approved by slack:{ANN} (1/1)" in world.store.read_log(deploy_id)


def test_an_environment_without_approvals_queues_at_once(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(protected(tmp_path / "checkout"))
    assert world.request(API, env="staging").state is DeployState.QUEUED


def test_the_requester_never_approves_their_own_deploy(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(protected(tmp_path / "checkout"))
    deploy_id = awaiting(world, user=ANN)
    with pytest.raises(AccessDenied, match="someone else must approve it"):
        world.service.approve(deploy_id, slack_user(ANN))
    assert world.store.list_approvals([deploy_id]) == {}


def test_a_non_approver_is_refused_and_a_group_member_may(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(protected(tmp_path / "checkout", approvers=[ANN, "S0SRE0001"]))
    deploy_id = awaiting(world)
    with pytest.raises(AccessDenied, match=f"<@{ANN}>, <!subteam\\^S0SRE0001>"):
        world.service.approve(deploy_id, slack_user(EVE))
    with pytest.raises(AccessDenied):
        world.service.reject(deploy_id, slack_user(EVE), "no")
    sre = DeployService(
        world.settings,
        world.store,
        world.github,
        world.pipeline,
        RecordingObserver(),
        {},
        members_of=lambda group: frozenset({EVE}) if group == "S0SRE0001" else frozenset(),
    )
    assert sre.approve(deploy_id, slack_user(EVE)).queued


def test_empty_approvers_means_the_repos_deployers(world_for: WorldFactory, tmp_path: Path) -> None:
    repos = protected(tmp_path / "checkout", approvers=[])
    repos[API]["deployers"] = [REQUESTER, BOB]
    world = world_for(repos)
    deploy_id = awaiting(world)
    with pytest.raises(AccessDenied):
        world.service.approve(deploy_id, slack_user(ANN))
    assert world.service.approve(deploy_id, slack_user(BOB)).queued


def test_a_double_approve_counts_once_and_says_so(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(protected(tmp_path / "checkout", required=2))
    deploy_id = awaiting(world)
    ops = chatops(world)
    first = ops.command(ApproveCommand(deploy_id), Caller(ANN))
    assert first.text == f"✅ Approved (1 so far): deploy #{deploy_id} needs more approvals."
    again = ops.click_approve(str(deploy_id), Caller(ANN))
    assert again.text == f"You approved deploy #{deploy_id} already; approvals count once (1 so far)."
    assert world.service.get(deploy_id).state is DeployState.AWAITING_APPROVAL
    assert len(world.store.list_approvals([deploy_id])[deploy_id]) == 1


def test_two_approvals_from_two_people_queue_it(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(protected(tmp_path / "checkout", required=2))
    deploy_id = awaiting(world)
    world.service.start()
    assert not world.service.approve(deploy_id, slack_user(ANN)).queued
    assert world.service.approve(deploy_id, slack_user(BOB)).queued
    assert world.wait_final(deploy_id).state is DeployState.SUCCEEDED
    (deployment,) = world.github.deployments_of(API)
    assert deployment.payload["approved_by"] == [ANN, BOB]


def test_a_rejection_ends_it_with_the_reason(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(protected(tmp_path / "checkout"))
    deploy_id = awaiting(world)
    reply = chatops(world).command(
        parse_deploy(f"reject {deploy_id} : release freeze <!channel>"), Caller(BOB)
    )
    assert reply.text == f"🙅 Deploy #{deploy_id} rejected: it will not run."
    deploy = world.service.get(deploy_id)
    assert deploy.state is DeployState.REJECTED and deploy.finished_at is not None
    assert deploy.error == f"rejected by slack:{BOB}: release freeze @channel"
    assert world.github.deployments_of(API) == []
    with pytest.raises(UnknownDeploy, match="rejected; it awaits no approval"):
        world.service.approve(deploy_id, slack_user(ANN))
    root = json.dumps(root_message(deploy, "https://c", None)[1], ensure_ascii=False)
    assert "🙅 rejected" in root and APPROVE_ACTION not in root and CANCEL_ACTION not in root


def test_no_decision_in_time_expires_it_once(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(protected(tmp_path / "checkout", timeout=0.2))
    deploy_id = awaiting(world)
    world.service.start()
    wait_for(lambda: world.service.get(deploy_id).state.is_final, 5.0, "expiry")
    deploy = world.service.get(deploy_id)
    assert deploy.state is DeployState.EXPIRED and deploy.error == "not approved in time"
    assert world.observer.states(deploy_id) == [DeployState.AWAITING_APPROVAL, DeployState.EXPIRED]
    assert world.github.deployments_of(API) == [] and not world.runner.started.is_set()


def test_break_glass_skips_gate_and_approval_and_the_root_says_so(
    world_for: WorldFactory, tmp_path: Path
) -> None:
    repos = protected(tmp_path / "checkout")
    repos[API]["required_contexts"] = ["ci/test"]
    world = world_for(repos)
    deploy = world.request(API, env="production", user=BREAKER, force=True)
    assert deploy.state is DeployState.QUEUED
    world.service.start()
    assert world.wait_final(deploy.id).state is DeployState.SUCCEEDED
    view = approval_view(world.settings, world.store, world.service.get(deploy.id))
    assert view is not None and view.break_glass
    text = json.dumps(
        root_message(world.service.get(deploy.id), "https://c", 1.0, approval=view)[1], ensure_ascii=False
    )
    assert f"*break glass*: CI gate and approval skipped by <@{BREAKER}>" in text
    assert "forced (CI gate skipped)" not in text
    with pytest.raises(AccessDenied):  # `!` is the force list's alone
        world.request(API, env="production", user=ANN, force=True, ref="v2")


def test_the_root_shows_who_may_approve_and_the_buttons(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(protected(tmp_path / "checkout", required=2))
    deploy_id = awaiting(world)
    world.service.approve(deploy_id, slack_user(ANN))
    deploy = world.service.get(deploy_id)
    view = approval_view(world.settings, world.store, deploy)
    assert isinstance(view, ApprovalView)
    text = json.dumps(root_message(deploy, "https://c", None, approval=view)[1], ensure_ascii=False)
    assert f"Awaiting approval (1/2) from <@{ANN}>, <@{BOB}>" in text
    assert f"Approved (1/2) by <@{ANN}> <!date^" in text
    assert APPROVE_ACTION in text and REJECT_ACTION in text and CANCEL_ACTION in text


def test_cancelling_a_deploy_awaiting_approval(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(protected(tmp_path / "checkout"))
    deploy_id = awaiting(world)
    cancelled = world.service.cancel(deploy_id, slack_user(REQUESTER))
    assert cancelled.state is DeployState.CANCELLED and cancelled.error == "cancelled while awaiting approval"


def test_a_second_identical_request_while_one_awaits_is_a_duplicate(
    world_for: WorldFactory, tmp_path: Path
) -> None:
    world = world_for(protected(tmp_path / "checkout"))
    deploy_id = awaiting(world)
    again, created = world.service.request(API, env="production", user=slack_user(BOB), source=Source.COMMAND)
    assert not created and again.id == deploy_id


def test_a_terminal_must_name_its_approver(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(protected(tmp_path / "checkout"))
    root = Actor(ActorKind.CLI, "root")
    with pytest.raises(ApprovalRequired, match="--approved-by NAME"):
        world.service.request(API, env="production", user=root, source=Source.CLI)
    with pytest.raises(AccessDenied, match="must name someone else"):
        world.service.request(API, env="production", user=root, source=Source.CLI, approved_by=root)
    deploy, created = world.service.request(
        API, env="production", user=root, source=Source.CLI, approved_by=Actor(ActorKind.CLI, "alice")
    )
    assert created and deploy.state is DeployState.QUEUED
    (given,) = world.store.list_approvals([deploy.id])[deploy.id]
    assert given.approver == "cli:alice"
    assert world.run(deploy.id).state is DeployState.SUCCEEDED
    assert world.github.deployments_of(API)[0].payload["approved_by"] == ["alice"]
    row = _status_row(world.service.get(deploy.id), (given,))
    assert row[-1] == "approved by cli:alice"


def test_deploy_status_lists_deploys_awaiting_approval(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(protected(tmp_path / "checkout", required=2))
    deploy_id = awaiting(world)
    world.service.approve(deploy_id, slack_user(BOB))
    reply = chatops(world).command(parse_status(""), Caller(ANN))
    text = json.dumps(reply.blocks, ensure_ascii=False)
    assert "*Awaiting approval*" in text and f"✋ #{deploy_id}" in text
    assert f"1/2 from <@{ANN}>, <@{BOB}>" in text and f"approved by <@{BOB}>" in text


def test_the_grammar_of_approve_and_reject() -> None:
    assert parse_deploy("approve 42") == ApproveCommand(42)
    assert parse_deploy("approve #42") == ApproveCommand(42)
    assert parse_deploy("reject 42") == RejectCommand(42, "")
    assert parse_deploy("reject 42 : not during the sale") == RejectCommand(42, "not during the sale")
    for bad in ("approve", "approve 1 2", "approve x", "reject", "approve 42 : why"):
        with pytest.raises(BadCommand, match=r"deploy id|takes one|reason"):
            parse_deploy(bad)


@pytest.mark.parametrize(
    ("approvals", "message"),
    [
        ({"approvers": ["alice"]}, "`alice` is not a Slack user id"),
        ({"approvers": ["U0ANN0001"], "required": 2}, "required (2) is more than the approvers listed (1)"),
        ({"approvers": ["U0ANN0001", "U0ANN0001"]}, "lists someone twice"),
        ({"required": 0}, "greater than or equal to 1"),
        ({"timeout": 0}, "greater than 0"),
        ({"quorum": 2}, "quorum"),
    ],
)
def test_approvals_config_is_validated(tmp_path: Path, approvals: dict[str, Any], message: str) -> None:
    repos = {API: {"environments": {"production": commands_env(tmp_path, approvals=approvals)}}}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings(write_config(tmp_path, "http://github.invalid", repos), environ())


def test_groups_allow_more_required_than_listed(tmp_path: Path) -> None:
    approvals = {"approvers": ["S0SRE0001"], "required": 3, "timeout": 60}
    repos = {API: {"environments": {"production": commands_env(tmp_path, approvals=approvals)}}}
    settings = load_settings(write_config(tmp_path, "http://github.invalid", repos), environ())
    found = settings.repos[API].environments["production"].approvals
    assert found is not None and found.required == 3 and found.timeout == 60


def test_a_terminal_approval_queues_the_identical_deploy_awaiting_it(
    world_for: WorldFactory, tmp_path: Path
) -> None:
    world = world_for(protected(tmp_path / "checkout"))
    deploy_id = awaiting(world)
    operator = Actor(ActorKind.CLI, "root")
    deploy, created = world.service.request(
        API, env="production", user=operator, source=Source.CLI, approved_by=Actor(ActorKind.CLI, "alice")
    )
    assert not created and deploy.id == deploy_id and deploy.state is DeployState.QUEUED
    assert world.observer.states(deploy_id) == [DeployState.AWAITING_APPROVAL, DeployState.QUEUED]
