"""Where approvals meet rollbacks, change lists and break glass: the service on the memory fakes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.changes import ChangeLists
from bot.errors import AccessDenied, ApprovalRequired
from bot.models import (
    Actor,
    ActorKind,
    ChangeKind,
    Comparison,
    ContextState,
    Deploy,
    DeployState,
    Source,
)
from bot.redact import Redactor
from tests.support.harness import TOKEN, slack_user
from tests.support.wait import wait_for
from tests.unit.conftest import API, World, WorldFactory, commands_env

REQUESTER, ANN, BREAKER = "U0REQ0001", "U0ANN0001", "U0BRK0001"


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
    with pytest.raises(AccessDenied):
        world.request(API, ref=a.sha, env="production", user=REQUESTER, force=True)
