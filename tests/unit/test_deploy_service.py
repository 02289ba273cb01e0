"""DeployService on in-memory ports: requests, dedupe, locks, access, cancel, where, history."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from bot.errors import (
    AccessDenied,
    EnvironmentLocked,
    InvalidRef,
    InvalidRepoName,
    StepSetupError,
    UnknownDeploy,
    UnknownEnvironment,
    UnknownRepo,
)
from bot.models import ROBOT, Actor, ActorKind, DeployState, Source
from tests.fakes.memory import blocks
from tests.support.harness import slack_user
from tests.unit.conftest import API, WorldFactory, commands_env


def two_envs(folder: Path, **repo: Any) -> dict[str, Any]:
    envs = {"staging": commands_env(folder), "production": commands_env(folder)}
    return {API: {"environments": envs, **repo}}


def test_request_queues_the_branch_head(world_for: WorldFactory) -> None:
    world = world_for()
    deploy = world.request()
    assert (deploy.state, deploy.sha, deploy.ref, deploy.env) == (
        DeployState.QUEUED,
        world.github.refs[API]["main"],
        "main",
        "production",
    )
    assert world.observer.states(deploy.id) == [DeployState.QUEUED]


def test_same_repo_env_sha_is_deduped_while_active(world_for: WorldFactory) -> None:
    world = world_for()
    first = world.request()
    again, created = world.service.request("api", user=slack_user("U2"), source=Source.BUTTON)
    assert (again.id, created) == (first.id, False)
    assert world.run(first.id).state is DeployState.SUCCEEDED
    third, created = world.service.request("api", user=slack_user("U2"), source=Source.BUTTON)
    assert created and third.id != first.id


@pytest.mark.parametrize(
    ("repo", "kwargs", "error", "text"),
    [
        ("acme/nope", {}, UnknownRepo, "Configured repos: acme/api"),
        ("acme/api", {"env": "prod"}, UnknownEnvironment, "Environments: production"),
        ("acme api", {}, InvalidRepoName, "owner/name"),
        ("acme/api", {"ref": "nope"}, InvalidRef, "nope"),
        ("acme/api", {"ref": "main;rm -rf /"}, InvalidRef, "not a valid ref"),
    ],
)
def test_bad_requests_record_nothing(
    world_for: WorldFactory, repo: str, kwargs: dict[str, Any], error: type[Exception], text: str
) -> None:
    world = world_for()
    with pytest.raises(error, match=re.escape(text)):
        world.service.request(repo, user=slack_user("U1"), source=Source.COMMAND, **kwargs)
    assert world.store.list_deploys() == []


def test_missing_folder_is_refused_before_queueing(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for({API: {"environments": {"production": commands_env(tmp_path / "gone")}}})
    with pytest.raises(StepSetupError, match="gone does not exist"):
        world.request()
    assert world.store.list_deploys() == []


def test_lock_refuses_with_who_and_why_until_unlocked(world_for: WorldFactory) -> None:
    world = world_for()
    world.service.lock(API, None, slack_user("U7"), "release freeze")
    with pytest.raises(EnvironmentLocked, match=r"locked by slack:U7 since .* UTC: release freeze"):
        world.request()
    assert world.service.unlock(API, "production", slack_user("U7")).locked_by == "slack:U7"
    assert world.request().state is DeployState.QUEUED
    with pytest.raises(UnknownDeploy, match="is not locked"):
        world.service.unlock(API, "production", slack_user("U7"))


def test_a_lock_taken_after_queueing_holds_the_deploy_until_unlock(world_for: WorldFactory) -> None:
    world = world_for()
    deploy = world.request()
    world.service.lock(API, None, slack_user("U7"), "hold on")
    assert world.store.claim_next() is None
    world.service.unlock(API, None, slack_user("U7"))
    assert world.run(deploy.id).state is DeployState.SUCCEEDED


def test_deployers_and_force_lists(world_for: WorldFactory, tmp_path: Path) -> None:
    envs = {"production": commands_env(tmp_path / "checkout")}
    world = world_for({API: {"environments": envs, "deployers": ["U5", "U9"], "force": ["U9"]}})
    with pytest.raises(AccessDenied, match=re.escape("Allowed: <@U5>, <@U9>.")):
        world.request(user="U1")
    with pytest.raises(AccessDenied, match="may not force a deploy of acme/api"):
        world.request(user="U5", force=True)
    assert world.request(user="U9", force=True).force
    merge, created = world.service.request(API, ref="main", user=ROBOT, source=Source.MERGE)
    assert not created and merge.requested_by == "slack:U9"  # a merge needs no deployer; dedupe still holds


def test_nobody_may_force_without_a_force_list(world_for: WorldFactory) -> None:
    world = world_for()
    with pytest.raises(AccessDenied, match="no `force` list"):
        world.request(force=True)


def test_cancel_queued_is_immediate_and_logged(world_for: WorldFactory) -> None:
    world = world_for()
    deploy = world.request()
    cancelled = world.service.cancel(deploy.id, slack_user("U1"))
    assert cancelled.state is DeployState.CANCELLED
    assert "cancelled by slack:U1 while queued" in world.store.read_log(deploy.id)
    with pytest.raises(UnknownDeploy, match="already cancelled"):
        world.service.cancel(deploy.id, slack_user("U1"))
    with pytest.raises(UnknownDeploy, match="no deploy #99"):
        world.service.cancel(99, slack_user("U1"))


def test_cancel_running_stops_its_step(world_for: WorldFactory) -> None:
    world = world_for()
    world.runner.script(blocks("working"))
    deploy = world.request()
    world.run_in_background(deploy.id)
    assert world.runner.started.wait(5)
    assert world.service.cancel(deploy.id, slack_user("U1")).cancel_requested
    final = world.wait_final(deploy.id)
    assert final.state is DeployState.CANCELLED
    assert final.error is not None and "cancelled during step 1/1" in final.error
    assert "cancel requested by slack:U1" in world.store.read_log(deploy.id)


def test_only_requester_deployers_or_force_may_cancel(world_for: WorldFactory, tmp_path: Path) -> None:
    envs = {"production": commands_env(tmp_path / "checkout")}
    world = world_for({API: {"environments": envs, "deployers": ["U1", "U2"], "force": ["U3"]}})
    deploy = world.request(user="U2")
    with pytest.raises(AccessDenied, match=r"may not cancel deploy #1 of acme/api\. Allowed: <@U1>"):
        world.service.cancel(deploy.id, slack_user("U9"))
    assert world.service.cancel(deploy.id, slack_user("U9"), operator=True).state is DeployState.CANCELLED


def test_one_env_runs_one_deploy_at_a_time_in_order(world_for: WorldFactory) -> None:
    world = world_for()
    first = world.request()
    world.github.push(API)
    second = world.request()
    assert world.store.claim_next(only_id=second.id) is None  # FIFO: #1 goes first
    assert world.run(first.id).state is DeployState.SUCCEEDED
    assert world.run(second.id).state is DeployState.SUCCEEDED


def test_where_shows_each_environment(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(two_envs(tmp_path / "checkout"))
    done = world.run(world.request(env="staging").id)
    world.service.lock("api", "production", slack_user("U7"), "freeze")
    views = {v.env: v for v in world.service.where("api")}
    assert views["staging"].is_default and views["staging"].last == done and views["staging"].lock is None
    lock = views["production"].lock
    assert views["production"].last is None and lock is not None and lock.reason == "freeze"


def test_history_filters_by_env_and_state_newest_first(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(two_envs(tmp_path / "checkout"))
    staged = world.run(world.request(env="staging").id)
    queued = world.request(env="production")
    assert [d.id for d in world.service.history()] == [queued.id, staged.id]
    assert world.service.history("api", "staging") == [staged]
    assert world.service.history(states=[DeployState.QUEUED]) == [queued]


def test_recover_marks_running_deploys_interrupted(world_for: WorldFactory) -> None:
    world = world_for()
    deploy = world.request()
    assert world.store.claim_next() is not None
    (found,) = world.service.recover()
    assert found.id == deploy.id and found.state is DeployState.INTERRUPTED
    assert world.observer.states(deploy.id)[-1] is DeployState.INTERRUPTED


def test_lock_and_unlock_are_deployers_rights(world_for: WorldFactory, tmp_path: Path) -> None:
    envs = {"production": commands_env(tmp_path / "checkout")}
    world = world_for({API: {"environments": envs, "deployers": ["U1"], "force": ["U3"]}})
    with pytest.raises(AccessDenied, match=r"may not lock production of acme/api\. Allowed: <@U1>, <@U3>"):
        world.service.lock(API, None, slack_user("U9"), "mine now")
    lock = world.service.lock(API, None, slack_user("U3"), "freeze")  # the force list may too
    assert lock.locker == slack_user("U3")
    with pytest.raises(AccessDenied, match=r"may not unlock production of acme/api"):
        world.service.unlock(API, None, slack_user("U9"))
    operator = Actor(ActorKind.CLI, "root")  # a terminal is the operator's
    assert world.service.unlock(API, None, operator).reason == "freeze"


def test_a_github_login_shaped_like_a_slack_id_gets_no_slack_rights(
    world_for: WorldFactory, tmp_path: Path
) -> None:
    envs = {"production": commands_env(tmp_path / "checkout")}
    world = world_for({API: {"environments": envs, "deployers": ["U0ALICE01"]}})
    merge, _ = world.service.request(
        API, ref="main", user=Actor(ActorKind.GITHUB, "U0MALLORY"), source=Source.MERGE
    )
    assert merge.requested_by == "github:U0MALLORY"
    # The Slack user with the same name is not the requester: only deployers may cancel.
    with pytest.raises(AccessDenied, match=r"may not cancel deploy #1"):
        world.service.cancel(merge.id, slack_user("U0MALLORY"))
    assert world.service.cancel(merge.id, slack_user("U0ALICE01")).state is DeployState.CANCELLED


def test_who_unlocked_is_recorded(world_for: WorldFactory) -> None:
    world = world_for()
    world.service.lock(API, None, slack_user("U7"), "freeze")
    world.service.unlock(API, None, slack_user("U8"))
    (unlocked, locked) = world.store.lock_history(API, "production")
    assert (unlocked.action, unlocked.actor, locked.actor) == ("unlocked", "slack:U8", "slack:U7")
