"""Where approvals meet rollbacks, change lists and break glass: the service on the memory fakes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bot.approvals import approval_view
from bot.changes import ChangeLists
from bot.errors import AccessDenied, ApprovalRequired, BadCommand
from bot.models import (
    Actor,
    ActorKind,
    ApprovalView,
    ChangeKind,
    Comparison,
    ContextState,
    Deploy,
    DeployState,
    Source,
)
from bot.redact import Redactor
from bot.slack.blocks.approvals import who_may_approve
from bot.slack.blocks.replies import help_blocks
from bot.slack.chatops import Caller, ChatOps
from bot.slack.commands import USAGE, ApproveCommand, CancelCommand, RejectCommand, parse_deploy
from tests.support.harness import TOKEN, slack_user
from tests.support.wait import wait_for
from tests.unit.conftest import API, World, WorldFactory, commands_env

REQUESTER, ANN, EVE, BREAKER = "U0REQ0001", "U0ANN0001", "U0EVE0001", "U0BRK0001"


def protected(folder: Path) -> dict[str, Any]:
    """acme/api: production wants one approval from ANN, with a CI gate and a force list."""
    envs = {"production": commands_env(folder, approvals={"approvers": [ANN]})}
    return {API: {"environments": envs, "force": [BREAKER], "required_contexts": ["ci/test"]}}


def succeeded(world: World, sha: str | None = None) -> Deploy:
    """A deploy of ``sha`` that succeeded in production (broken glass: no approval to wait for)."""
    deploy = world.request(API, ref=sha, env="production", user=BREAKER, force=True)
    world.store.claim_next(only_id=deploy.id)
    return world.store.finish_deploy(deploy.id, DeployState.SUCCEEDED, None)


def with_change_lists(world: World) -> World:
    world.pipeline.changes = ChangeLists(world.settings, world.github, world.store, Redactor([TOKEN]))
    return world


def test_approvers_see_the_change_list_before_they_approve(world_for: WorldFactory, tmp_path: Path) -> None:
    world = with_change_lists(world_for(protected(tmp_path / "checkout")))
    base = succeeded(world)
    head = world.github.push(API)
    world.github.green(API, head, "ci/test")
    world.github.comparisons[(API, base.sha, head)] = Comparison("ahead", 1, 0, 1, ())
    deploy = world.request(API, ref=head, env="production", user=REQUESTER)
    assert deploy.state is DeployState.AWAITING_APPROVAL
    assert world.store.get_changes(deploy.id) is None, "never worked out on the requester's thread"
    world.service.start()
    wait_for(lambda: world.store.get_changes(deploy.id) is not None, 5.0, "the change list")
    changes = world.store.get_changes(deploy.id)
    assert changes is not None and changes.kind is ChangeKind.AHEAD and changes.base_deploy_id == base.id
    # The root is redrawn with it while the deploy still awaits approval.
    wait_for(
        lambda: world.observer.states(deploy.id).count(DeployState.AWAITING_APPROVAL) == 2, 5.0, "redraw"
    )
    assert world.service.get(deploy.id).state is DeployState.AWAITING_APPROVAL
    assert len(world.github.compare_calls) == 1
    world.service.approve(deploy.id, slack_user(ANN))
    assert world.wait_final(deploy.id).state is DeployState.SUCCEEDED
    assert len(world.github.compare_calls) == 1, "the claim reuses the cached compare"


def test_the_claim_lists_changes_again_when_the_environment_moved_on(
    world_for: WorldFactory, tmp_path: Path
) -> None:
    world = with_change_lists(world_for(protected(tmp_path / "checkout")))
    succeeded(world)
    head = world.github.push(API)
    world.github.green(API, head, "ci/test")
    deploy = world.request(API, ref=head, env="production", user=REQUESTER)
    world.service.start()
    wait_for(lambda: world.store.get_changes(deploy.id) is not None, 5.0, "the change list")
    # Someone breaks glass with a newer SHA meanwhile: the approved deploy now goes back.
    newer = world.github.push(API)
    world.github.comparisons[(API, newer, head)] = Comparison("behind", 0, 1, 0, ())
    moved = succeeded(world, newer)
    world.service.approve(deploy.id, slack_user(ANN))
    assert world.wait_final(deploy.id).state is DeployState.SUCCEEDED
    changes = world.store.get_changes(deploy.id)
    assert changes is not None and changes.kind is ChangeKind.BEHIND and changes.base_deploy_id == moved.id


def test_a_rollback_awaits_approval_then_runs_without_the_gate(
    world_for: WorldFactory, tmp_path: Path
) -> None:
    world = world_for(protected(tmp_path / "checkout"))
    a, b = succeeded(world), succeeded(world, world.github.push(API))
    # CI of the old SHA went red since: a rollback is still not gated, only approved.
    world.github.script_ci(API, a.sha, {"ci/test": ContextState.FAILURE})
    rollback, created = world.service.rollback(
        API, "production", user=slack_user(REQUESTER), source=Source.COMMAND
    )
    assert created and rollback.state is DeployState.AWAITING_APPROVAL and rollback.rollback_of == b.id
    world.service.start()
    assert world.github.deployments_of(API) == []
    assert world.service.approve(rollback.id, slack_user(ANN)).queued
    assert world.wait_final(rollback.id).state is DeployState.SUCCEEDED
    (deployment,) = world.github.deployments_of(API)
    assert deployment.sha == a.sha and deployment.required_contexts == ()
    assert deployment.payload["rollback_of"] == b.id and deployment.payload["approved_by"] == [ANN]


def test_a_terminal_rollback_names_its_approver(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(protected(tmp_path / "checkout"))
    succeeded(world)
    b = succeeded(world, world.github.push(API))
    operator = Actor(ActorKind.CLI, "ops")
    with pytest.raises(ApprovalRequired, match="--approved-by NAME"):
        world.service.rollback(API, "production", user=operator, source=Source.CLI)
    rollback, _ = world.service.rollback(
        API, "production", user=operator, source=Source.CLI, approved_by=Actor(ActorKind.CLI, "alice")
    )
    assert rollback.state is DeployState.QUEUED and rollback.rollback_of == b.id
    assert [a.approver for a in world.store.list_approvals([rollback.id])[rollback.id]] == ["cli:alice"]


def test_a_rollback_by_the_force_list_still_awaits_approval(world_for: WorldFactory, tmp_path: Path) -> None:
    """A rollback has no `!`: breaking glass is deploying the SHA with `!` (see the README)."""
    world = world_for(protected(tmp_path / "checkout"))
    a = succeeded(world)
    succeeded(world, world.github.push(API))
    rollback, _ = world.service.rollback(API, "production", user=slack_user(BREAKER), source=Source.COMMAND)
    assert rollback.state is DeployState.AWAITING_APPROVAL and not rollback.force
    world.service.cancel(rollback.id, slack_user(BREAKER))
    glass = world.request(API, ref=a.sha, env="production", user=BREAKER, force=True)
    assert glass.state is DeployState.QUEUED and glass.force and glass.rollback_of is None
    # Its root says break glass, and names no approvers: none was asked.
    assert approval_view(world.settings, world.store, glass) == ApprovalView(1, (), (), break_glass=True)
    with pytest.raises(AccessDenied):
        world.request(API, ref=a.sha, env="production", user=REQUESTER, force=True)


def test_a_terminal_force_skips_the_gate_not_the_approval(world_for: WorldFactory, tmp_path: Path) -> None:
    """`robot deploy --force` breaks the CI gate only: the terminal still names its approver."""
    world = world_for(protected(tmp_path / "checkout"))
    ops = Actor(ActorKind.CLI, "ops")
    with pytest.raises(ApprovalRequired, match="--approved-by NAME"):
        world.service.request(API, env="production", user=ops, source=Source.CLI, force=True)
    forced, _ = world.service.request(
        API,
        env="production",
        user=ops,
        source=Source.CLI,
        force=True,
        approved_by=Actor(ActorKind.CLI, "ann"),
    )
    assert forced.state is DeployState.QUEUED and forced.force
    assert [a.approver for a in world.store.list_approvals([forced.id])[forced.id]] == ["cli:ann"]


def test_an_approver_named_where_none_is_wanted_is_refused(world_for: WorldFactory, tmp_path: Path) -> None:
    repos = protected(tmp_path / "checkout")
    repos[API]["environments"]["staging"] = commands_env(tmp_path / "checkout")
    world = world_for(repos)
    with pytest.raises(ApprovalRequired, match="wants no approvals"):
        world.service.request(
            API,
            env="staging",
            user=Actor(ActorKind.CLI, "ops"),
            source=Source.CLI,
            approved_by=Actor(ActorKind.CLI, "ann"),
        )


def test_lists_name_enterprise_users_as_users_everywhere(world_for: WorldFactory, tmp_path: Path) -> None:
    """A W… id is a user (Enterprise Grid), never a user group, in a refusal as on a root."""
    repos = protected(tmp_path / "checkout")
    repos[API]["deployers"] = ["W0ENT0001", "S0SRE0001"]
    world = world_for(repos)
    with pytest.raises(AccessDenied, match=re.escape("Allowed: <@W0ENT0001>, <!subteam^S0SRE0001>.")):
        world.request(API, env="production", user=EVE)
    assert who_may_approve(["W0ENT0001", ANN, "S0SRE0001"]) == (
        f"<@W0ENT0001>, <@{ANN}>, <!subteam^S0SRE0001>"
    )


@pytest.mark.parametrize("keyword", ["cancel", "approve", "reject"])
def test_every_deploy_id_command_reads_its_id_alike(keyword: str) -> None:
    with pytest.raises(
        BadCommand, match=re.escape(f"`/deploy {keyword}` needs a deploy id, e.g. `/deploy {keyword} 42`.")
    ):
        parse_deploy(keyword)
    with pytest.raises(BadCommand, match=re.escape(f"`/deploy {keyword}` takes one deploy id")):
        parse_deploy(f"{keyword} 1 2")
    with pytest.raises(BadCommand, match="is not a deploy id"):
        parse_deploy(f"{keyword} #0")
    assert parse_deploy(f"{keyword} #42") in (CancelCommand(42), ApproveCommand(42), RejectCommand(42))


@pytest.mark.parametrize(
    ("click", "action"),
    [("click_cancel", "Cancel"), ("click_approve", "Approve"), ("click_reject", "Reject")],
)
def test_every_deploy_id_button_refuses_a_broken_value_alike(
    world_for: WorldFactory, tmp_path: Path, click: str, action: str
) -> None:
    ops = ChatOps(world_for(protected(tmp_path / "checkout")).service)
    for value in ("²", "0", "1" * 19, "1; drop"):
        with pytest.raises(
            BadCommand, match=f"This {action} button is broken; use `/deploy {action.lower()} <id>`"
        ):
            getattr(ops, click)(value, Caller(ANN))


def test_help_says_what_break_glass_and_cancel_and_status_cover() -> None:
    text = json.dumps(help_blocks(), ensure_ascii=False)
    assert "`!` (the repo's force list) skips the CI gate and any approval: break glass" in text
    assert "stop a deploy awaiting approval, queued, waiting for CI or running" in text
    assert "running, queued, awaiting approval and recent deploys; locks" in text
    for command in ("cancel", "lock", "unlock", "where", "rollback", "changes", "approve", "reject", "help"):
        assert f"`/deploy {command}" in USAGE and f"`/deploy {command}" in text
