"""Deploys waiting for CI hold no worker; wake-ups reach a service sharing the store at once."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from bot.cli import _status_row
from bot.deploys import DeployService
from bot.models import ContextState, DeployState, Source
from bot.slack.chatops import Caller, ChatOps
from bot.slack.commands import parse_status
from tests.fakes.memory import RecordingObserver
from tests.support.harness import slack_user
from tests.support.wait import wait_for
from tests.unit.conftest import API, World, WorldFactory, commands_env

WEB = "acme/web"
PENDING = {"ci/test": ContextState.PENDING}
GREEN = {"ci/test": ContextState.SUCCESS}
ONE_WORKER = {"workers": 1, "ci_poll_interval": 0.02, "kill_grace": 0}


def gated_and_open(folder: Path, **api: Any) -> dict[str, Any]:
    """acme/api gated on ci/test, acme/web not gated; one production environment each."""
    env = {"production": commands_env(folder)}
    return {API: {"environments": env, "required_contexts": ["ci/test"], **api}, WEB: {"environments": env}}


def wait_state(world: World, deploy_id: int, state: DeployState) -> None:
    wait_for(lambda: world.service.get(deploy_id).state is state, 5.0, f"#{deploy_id} {state.value}")


def test_pending_ci_with_one_worker_does_not_delay_another_repo(
    world_for: WorldFactory, tmp_path: Path
) -> None:
    world = world_for(gated_and_open(tmp_path / "checkout"), deploys=ONE_WORKER)
    sha = world.github.refs[API]["main"]
    world.github.script_ci(API, sha, PENDING)
    world.service.start()
    waiting = world.request(API)
    wait_state(world, waiting.id, DeployState.WAITING)
    other = world.request(WEB)
    assert world.wait_final(other.id).state is DeployState.SUCCEEDED
    current = world.service.get(waiting.id)
    assert current.state is DeployState.WAITING and current.owner_id is None
    assert current.waiting_for == "waiting for CI: ci/test pending"
    assert world.github.deployments_of(API) == []
    world.github.script_ci(API, sha, GREEN)
    final = world.wait_final(waiting.id)
    assert final.state is DeployState.SUCCEEDED, final.error
    assert world.observer.states(waiting.id)[:3] == [
        DeployState.QUEUED,
        DeployState.WAITING,
        DeployState.RUNNING,
    ]
    assert world.observer.of_kind("gate", waiting.id) == [("ci/test",)]


def test_a_failing_recheck_blocks_and_says_why(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(gated_and_open(tmp_path / "checkout"), deploys=ONE_WORKER)
    sha = world.github.refs[API]["main"]
    world.github.script_ci(API, sha, PENDING)
    world.service.start()
    deploy = world.request(API)
    wait_state(world, deploy.id, DeployState.WAITING)
    world.github.script_ci(API, sha, {"ci/test": ContextState.FAILURE})
    final = world.wait_final(deploy.id)
    assert (final.state, final.error) == (DeployState.BLOCKED, "CI failed: ci/test")
    assert "==> blocked: CI failed: ci/test" in world.store.read_log(deploy.id)
    assert world.github.deployments_of(API) == [] and world.runner.ran == []


def test_cancel_ends_a_waiting_deploy_at_once(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(gated_and_open(tmp_path / "checkout"), deploys=ONE_WORKER)
    world.github.script_ci(API, world.github.refs[API]["main"], PENDING)
    world.service.start()
    deploy = world.request(API)
    wait_state(world, deploy.id, DeployState.WAITING)
    cancelled = world.service.cancel(deploy.id, slack_user("U1"))
    assert (cancelled.state, cancelled.error) == (DeployState.CANCELLED, "cancelled while waiting for CI")
    assert "cancelled by slack:U1 while waiting for CI" in world.store.read_log(deploy.id)
    assert world.observer.states(deploy.id)[-1] is DeployState.CANCELLED
    assert world.runner.ran == []


def test_a_request_made_through_another_service_starts_at_once(world_for: WorldFactory) -> None:
    # Two robot processes on one store: this one only requests, the world's serves.
    world = world_for()
    world.service.start()
    time.sleep(0.2)  # its workers are idle, waiting on the store's feed (fallback: 10 s)
    other = DeployService(world.settings, world.store, world.github, world.pipeline, RecordingObserver(), {})
    started = time.monotonic()
    deploy, created = other.request(API, user=slack_user("U1"), source=Source.COMMAND)
    assert created
    wait_for(lambda: world.service.get(deploy.id).state is not DeployState.QUEUED, 5.0, "claimed")
    assert time.monotonic() - started < 1.0
    assert world.wait_final(deploy.id).state is DeployState.SUCCEEDED


def test_deploy_status_and_robot_status_say_what_a_waiting_deploy_waits_for(
    world_for: WorldFactory, tmp_path: Path
) -> None:
    world = world_for(gated_and_open(tmp_path / "checkout"), deploys=ONE_WORKER)
    world.github.script_ci(API, world.github.refs[API]["main"], PENDING)
    world.service.start()
    deploy = world.request(API)
    wait_state(world, deploy.id, DeployState.WAITING)
    queued_behind = world.request(API, ref=world.github.push(API))
    reply = ChatOps(world.service).command(parse_status(""), Caller("U1", "C1"))
    shown = json.dumps(reply.blocks, ensure_ascii=False)
    assert "⏸️" in shown and "waiting for CI: ci/test pending" in shown
    assert "2nd in line" in shown  # the waiting head keeps its place: #2 waits behind it
    row = _status_row(world.service.get(deploy.id))
    assert row[4] == "⏸️ waiting" and row[-1] == "waiting for CI: ci/test pending"
    assert world.service.get(queued_behind.id).state is DeployState.QUEUED
