"""A deploy's end when the store refuses writes or the robot stops: store first, then GitHub, and
the environment is never left blocked."""

from __future__ import annotations

import threading
import time

from bot.errors import StoreError
from bot.models import Deploy, DeployState
from bot.pipeline import STOPPED_SUMMARY
from tests.fakes.memory import MemoryGitHub, MemoryStore, blocks
from tests.support.wait import wait_for
from tests.unit.conftest import API, WorldFactory


class RefusingFinishStore(MemoryStore):
    """A MemoryStore whose first ``refusals`` final transitions fail as a locked database would."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals

    def finish_deploy(self, deploy_id: int, state: DeployState, error: str | None) -> Deploy:
        if self.refusals > 0:
            self.refusals -= 1
            raise StoreError("the database is unavailable: database is locked")
        return super().finish_deploy(deploy_id, state, error)


class StoreWitnessGitHub(MemoryGitHub):
    """Remembers, for each final status GitHub is sent, what the store said at that moment."""

    def __init__(self) -> None:
        super().__init__()
        self.store: MemoryStore | None = None
        self.store_said: list[tuple[str, DeployState]] = []

    def set_deployment_status(
        self, repo: str, deployment_id: int, state: str, description: str, log_url: str | None = None
    ) -> None:
        if state in ("success", "failure", "error") and self.store is not None:
            (deploy,) = [d for d in self.store.list_deploys() if d.github_deployment_id == deployment_id]
            self.store_said.append((state, deploy.state))
        super().set_deployment_status(repo, deployment_id, state, description, log_url)


def test_refused_final_transition_is_retried_then_github_agrees_and_the_queue_moves(
    world_for: WorldFactory,
) -> None:
    store, github = RefusingFinishStore(refusals=3), StoreWitnessGitHub()
    github.store = store
    world = world_for(store=store, github=github)
    first = world.request()
    world.github.push(API)
    second = world.request()
    world.service.start()
    done = world.wait_final(first.id, timeout=10)
    assert (done.state, done.error) == (DeployState.SUCCEEDED, None)
    assert store.refusals == 0, "the store was asked again after refusing"
    assert world.wait_final(second.id, timeout=10).state is DeployState.SUCCEEDED
    # GitHub heard each outcome once, after the store held it: the two never disagree.
    assert github.store_said == [("success", DeployState.SUCCEEDED)] * 2
    deployments = github.deployments_of(API)
    assert [d.states for d in deployments] == [["queued", "in_progress", "success"]] * 2
    assert world.observer.states(first.id)[-1] is DeployState.SUCCEEDED


class BlockingDeployments(MemoryGitHub):
    """GitHub that never answers create-deployment (until released): a worker stuck in a call."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.called = threading.Event()

    def create_deployment(self, *args: object, **kwargs: object) -> int:
        self.called.set()
        self.release.wait(30)
        return super().create_deployment(*args, **kwargs)  # type: ignore[arg-type]


def test_stop_records_cancelled_a_deploy_whose_worker_waits_on_github(world_for: WorldFactory) -> None:
    github = BlockingDeployments()
    world = world_for(github=github)
    deploy = world.request()
    world.service.start()
    assert github.called.wait(5)
    began = time.monotonic()
    try:
        world.service.stop(timeout=3)
        took = time.monotonic() - began
    finally:
        github.release.set()
    assert took < 3.5, took
    final = world.service.get(deploy.id)
    assert (final.state, final.error) == (DeployState.CANCELLED, STOPPED_SUMMARY)
    assert world.observer.states(deploy.id)[-1] is DeployState.CANCELLED
    assert world.runner.ran == [], "no step starts once the robot stops"


class SlowStatuses(MemoryGitHub):
    """GitHub that takes ``seconds`` to answer each final deployment status."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def set_deployment_status(
        self, repo: str, deployment_id: int, state: str, description: str, log_url: str | None = None
    ) -> None:
        if state in ("success", "failure", "error"):
            time.sleep(self.seconds)
        super().set_deployment_status(repo, deployment_id, state, description, log_url)


def test_stop_is_on_time_when_github_answers_slowly(world_for: WorldFactory) -> None:
    world = world_for(github=SlowStatuses(seconds=20))
    world.runner.script(blocks("working"))
    deploy = world.request()
    world.service.start()
    assert world.runner.started.wait(5)
    began = time.monotonic()
    world.service.stop(timeout=3)
    assert time.monotonic() - began < 3.5
    final = world.service.get(deploy.id)
    assert final.state is DeployState.CANCELLED
    assert final.error and final.error.startswith("the robot stopped: cancelled during step 1/1")
    wait_for(lambda: world.observer.states(deploy.id)[-1] is DeployState.CANCELLED, 2, "the observer")
