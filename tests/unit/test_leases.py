"""The lease rule on MemoryStore: a running deploy is taken from its owner only when the owner is gone."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.deploys import PROCESS_ROWS_KEEP_SECONDS, DeployService
from bot.errors import ConfigError, StoreError
from bot.models import (
    Actor,
    ActorKind,
    Deploy,
    DeployState,
    ProcessInfo,
    ProcessKind,
    Source,
    Step,
    StepResult,
    StepStatus,
)
from bot.pipeline import Pipeline
from bot.ports import StepContext, StepRunner
from bot.processes import Heartbeat, this_process
from bot.redact import Redactor
from tests.fakes.memory import MemoryStore, RecordingObserver, blocks
from tests.support.harness import environ, slack_user, write_config
from tests.support.wait import wait_for
from tests.unit.conftest import API, World, WorldFactory

LEASE = 30.0
# Above Linux's largest pid (pid_max is at most 2**22): no process has it, so its owner is dead.
DEAD_PID = 2**22 + 1


class Clock:
    """The time every process sharing the MemoryStore reads; tests move it on."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Killer:
    """Stands in for stop_groups: records each call and the deploy's state at that moment."""

    def __init__(self, store: MemoryStore, deploy_id: int | None = None) -> None:
        self.store = store
        self.deploy_id = deploy_id
        self.calls: list[tuple[list[int], float, DeployState | None]] = []

    def __call__(self, groups: Iterable[int], grace: float) -> None:
        current = self.store.get_deploy(self.deploy_id) if self.deploy_id is not None else None
        self.calls.append((list(groups), grace, current.state if current else None))


def other_process(world: World, killer: Killer | None = None) -> tuple[DeployService, RecordingObserver]:
    """A second robot process on the same store (and the same machine)."""
    observer = RecordingObserver()
    service = DeployService(
        world.settings,
        world.store,
        world.github,
        world.pipeline,
        observer,
        environ(),
        stop_groups=killer or Killer(world.store),
    )
    return service, observer


def owned_by(world: World, info: ProcessInfo, pgid: int | None = None) -> Deploy:
    """A deploy with a GitHub deployment, claimed by a process registered as ``info`` that beats no more."""
    deploy = world.request()
    owner = world.store.register_process(info)
    claimed = world.store.claim_next(only_id=deploy.id, owner=owner.id)
    assert claimed is not None
    gh_id = world.github.create_deployment(API, deploy.sha, deploy.env, [], {}, "d")
    world.store.update_deploy(deploy.id, github_deployment_id=gh_id)
    if pgid is not None:
        world.store.record_step(deploy.id, pgid)
    return world.store.get_deploy(deploy.id) or claimed


def another(world: World) -> Deploy:
    """A second deploy of the same environment (a newer commit), queued behind the first."""
    world.github.push(API)
    return world.request()


def gh_states(world: World) -> list[str]:
    (deployment,) = world.github.deployments_of(API)
    return deployment.states


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fast(world_for: WorldFactory, clock: Clock) -> World:
    """A world whose processes beat every 20 ms (lease 1 s), on a store with a movable clock."""
    world = world_for(state={"heartbeat": 0.02, "lease": 1})
    world.store.clock = clock
    return world


def test_a_live_owners_running_deploy_is_never_taken(world_for: WorldFactory) -> None:
    world = world_for()
    world.runner.script(blocks("working"))
    deploy = world.request()
    world.run_in_background(deploy.id)
    wait_for(world.runner.started.is_set, what="the step to start")
    second, observer = other_process(world)
    try:
        second_id = second.register(ProcessKind.RUN)
        assert second.recover() == []
        running = world.service.get(deploy.id)
        assert running.state is DeployState.RUNNING and running.owner_id not in (None, second_id)
        assert observer.events == []
    finally:
        second.close()
        world.service.cancel(deploy.id, slack_user("U1"))
    assert world.wait_final(deploy.id).state is DeployState.CANCELLED


def test_an_expired_lease_on_this_machine_kills_the_step_group_then_releases(
    fast: World, clock: Clock
) -> None:
    deploy = owned_by(fast, replace(this_process(ProcessKind.RUN), pid=DEAD_PID), pgid=4321)
    queued = another(fast)
    killer = Killer(fast.store, deploy.id)
    second, observer = other_process(fast, killer)
    try:
        second.register(ProcessKind.RUN)
        assert fast.service.get(deploy.id).state is DeployState.RUNNING, "the lease has not run out yet"
        clock.advance(2)  # past the lease: the next beat of the watcher takes it, not only a start
        wait_for(lambda: fast.service.get(deploy.id).state.is_final, 5, "the takeover")
    finally:
        second.close()
    taken = fast.service.get(deploy.id)
    assert taken.state is DeployState.INTERRUPTED
    assert taken.error is not None and "sent no heartbeat for over 1 s" in taken.error
    # Killed while the deploy still held the environment, with the configured grace.
    assert killer.calls == [([4321], fast.settings.deploys.kill_grace, DeployState.RUNNING)]
    assert fast.store.get_lock(API, "production") is None
    assert gh_states(fast)[-1] == "error"
    assert observer.states(deploy.id) == [DeployState.INTERRUPTED]
    assert fast.store.claim_next().id == queued.id  # type: ignore[union-attr]


def test_a_silent_owner_still_alive_on_this_machine_is_not_killed_but_its_env_is_locked(
    fast: World, clock: Clock
) -> None:
    # This test's own process stands for a robot that is paused or stuck on the database.
    deploy = owned_by(fast, this_process(ProcessKind.RUN), pgid=4321)
    killer = Killer(fast.store, deploy.id)
    second, _ = other_process(fast, killer)
    try:
        second.register(ProcessKind.RUN)
        clock.advance(2)
        wait_for(lambda: fast.service.get(deploy.id).state.is_final, 5, "the takeover")
    finally:
        second.close()
    assert fast.service.get(deploy.id).state is DeployState.INTERRUPTED
    assert killer.calls == []
    lock = fast.store.get_lock(API, "production")
    assert lock is not None and "is alive but sent no heartbeat" in lock.reason


def test_an_owner_on_another_host_gets_its_environment_locked_not_killed(fast: World, clock: Clock) -> None:
    deploy = owned_by(fast, ProcessInfo("host-b", 77, "another-boot", ProcessKind.DEPLOY), pgid=4321)
    another(fast)
    killer = Killer(fast.store, deploy.id)
    second, _ = other_process(fast, killer)
    clock.advance(2)
    try:
        (taken,) = second.recover()
    finally:
        second.close()
    assert taken.id == deploy.id and taken.state is DeployState.INTERRUPTED
    assert killer.calls == []
    lock = fast.store.get_lock(API, "production")
    assert lock is not None and lock.locked_by == "robot"
    assert lock.reason == f"step of deploy #{deploy.id} may still be running on host-b; unlock when checked"
    assert fast.store.claim_next() is None, "nothing else starts there until someone unlocks"
    assert gh_states(fast)[-1] == "error"


def test_the_same_host_name_on_another_boot_is_another_machine(fast: World, clock: Clock) -> None:
    me = this_process(ProcessKind.RUN)
    deploy = owned_by(fast, ProcessInfo(me.host, me.pid, "boot-before-a-reboot", ProcessKind.RUN), pgid=1)
    killer = Killer(fast.store, deploy.id)
    second, _ = other_process(fast, killer)
    clock.advance(2)
    assert [d.id for d in second.recover()] == [deploy.id]
    assert killer.calls == [] and fast.store.get_lock(API, "production") is not None


def test_a_stopped_owner_is_taken_over_at_once_and_an_unknown_one_locks(fast: World) -> None:
    stopped = owned_by(fast, this_process(ProcessKind.DEPLOY))
    assert stopped.owner_id is not None
    fast.store.stop_process(stopped.owner_id)
    second, _ = other_process(fast)
    assert [d.id for d in second.recover()] == [stopped.id]
    me = this_process(ProcessKind.RUN)
    assert (
        second.get(stopped.id).error
        == f"robot stopped during the deploy (robot pid {me.pid} on {me.host} stopped)"
    )
    assert fast.store.get_lock(API, "production") is None, "same machine, no step group: nothing to check"

    unknown = another(fast)
    assert fast.store.claim_next(only_id=unknown.id) is not None  # claimed with no owner recorded
    assert [d.id for d in second.recover()] == [unknown.id]
    assert second.get(unknown.id).error == "robot stopped during the deploy (no known robot owned it)"
    lock = fast.store.get_lock(API, "production")
    assert lock is not None and "may still be running on an unknown host" in lock.reason


def test_a_process_never_takes_its_own_deploys(world_for: WorldFactory, clock: Clock) -> None:
    world = world_for()
    world.store.clock = clock
    world.runner.script(blocks())
    deploy = world.request()
    world.run_in_background(deploy.id)
    wait_for(world.runner.started.is_set, what="the step to start")
    clock.advance(LEASE * 10)
    assert world.service.recover() == []
    world.service.cancel(deploy.id, slack_user("U1"))
    assert world.wait_final(deploy.id).state is DeployState.CANCELLED


def test_an_owner_whose_lease_ran_out_stops_its_step_and_reports_nothing_more(
    world_for: WorldFactory, clock: Clock
) -> None:
    world = world_for()
    world.store.clock = clock
    world.runner.script(blocks("working"))
    deploy = world.request()
    world.run_in_background(deploy.id)
    wait_for(world.runner.started.is_set, what="the step to start")
    wait_for(lambda: bool(world.github.deployments_of(API)), what="the GitHub deployment")
    clock.advance(LEASE + 1)  # e.g. the database was unreachable for longer than the lease
    second, _ = other_process(world)
    assert [d.id for d in second.recover()] == [deploy.id]
    # The first robot notices through the store, cancels its step, and leaves the outcome alone.
    final = world.wait_final(deploy.id)
    for thread in world.threads:
        thread.join(5)
    assert world.service.get(deploy.id) == final and final.state is DeployState.INTERRUPTED
    assert gh_states(world)[-1] == "error" and gh_states(world).count("error") == 1
    assert world.runner.ran[0][1].cancel.is_set()


class ReportingRunner:
    """A step that reports its process group, and notes what the store says while it runs."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.seen: list[int | None] = []
        self.cancelled: list[bool] = []

    def run(self, step: Step, ctx: StepContext) -> StepResult:
        ctx.on_process(4321)
        deploy_id = int(ctx.deploy_vars["DEPLOY_ID"])
        self.seen.append(self.store.get_deploy(deploy_id).step_pgid)  # type: ignore[union-attr]
        self.cancelled.append(ctx.cancel.is_set())
        return StepResult(StepStatus.OK, "", 0)


def pipeline_with(world: World, runner: StepRunner) -> Pipeline:
    env = environ()
    return Pipeline(
        world.settings, world.github, world.store, runner, Redactor.for_environment(frozenset(), env), env
    )


def test_the_pipeline_records_each_steps_group_and_clears_it(world_for: WorldFactory) -> None:
    world = world_for()
    runner = ReportingRunner(world.store)
    deploy = world.request()
    claimed = world.store.claim_next(owner=world.store.register_process(this_process(ProcessKind.RUN)).id)
    assert claimed is not None
    final = pipeline_with(world, runner).run(claimed, world.observer, threading.Event())
    assert final.id == deploy.id and final.state is DeployState.SUCCEEDED
    assert runner.seen == [4321] and runner.cancelled == [False]
    assert final.step_pgid is None, "cleared once the step ended"


def test_a_step_starting_in_a_deploy_taken_over_is_cancelled(world_for: WorldFactory) -> None:
    world = world_for()
    deploy = world.request()
    claimed = world.store.claim_next(owner=world.store.register_process(this_process(ProcessKind.RUN)).id)
    assert claimed is not None
    world.store.take_over(deploy.id, 0, "taken")
    cancel = threading.Event()
    ctx_cancel: list[threading.Event] = []

    class Recorder:
        def run(self, step: Step, ctx: StepContext) -> StepResult:
            ctx.on_process(99)
            ctx_cancel.append(ctx.cancel)
            return StepResult(StepStatus.CANCELLED, "cancelled")

    pipeline_with(world, Recorder()).run(claimed, world.observer, cancel)
    assert ctx_cancel and ctx_cancel[0].is_set()
    assert world.service.get(deploy.id).error == "taken"


def test_lease_must_outlast_two_heartbeats(tmp_path: Path) -> None:
    repos = {API: {"environments": {"production": {"commands": [["true"]]}}}}
    config = write_config(tmp_path, "http://github.invalid", repos, state={"heartbeat": 5, "lease": 10})
    with pytest.raises(ConfigError, match=r"state: lease \(10 s\) must be more than twice heartbeat \(5 s\)"):
        load_settings(config, environ())
    fine = write_config(tmp_path, "http://github.invalid", repos, state={"heartbeat": 5, "lease": 10.5})
    state = load_settings(fine, environ()).state
    assert (state.heartbeat, state.lease) == (5, 10.5)
    default = write_config(tmp_path, "http://github.invalid", repos)
    state = load_settings(default, environ()).state
    assert (state.heartbeat, state.lease) == (5, 30)


def test_a_store_error_during_a_beat_is_logged_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def beat() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise StoreError("the database is unavailable: gone")

    heartbeat = Heartbeat(beat, 0.01, "heartbeat")
    with caplog.at_level(logging.WARNING):
        heartbeat.start()
        wait_for(lambda: len(calls) >= 3, 5, "beats after the failed one")
        heartbeat.stop()
    assert "heartbeat: store unavailable, trying again next beat" in caplog.text


def test_register_records_the_process_and_close_its_stop(world_for: WorldFactory) -> None:
    world = world_for()
    process_id = world.service.register(ProcessKind.DEPLOY)
    assert world.service.register(ProcessKind.RUN) == process_id, "registered once"
    process = world.store.get_process(process_id)
    me = this_process(ProcessKind.DEPLOY)
    assert process is not None and process.stopped_at is None
    assert (process.host, process.pid, process.boot_id, process.kind) == (
        me.host,
        me.pid,
        me.boot_id,
        ProcessKind.DEPLOY,
    )
    world.service.close()
    stopped = world.store.get_process(process_id)
    assert stopped is not None and stopped.stopped_at is not None


def test_a_live_process_deletes_rows_silent_for_a_day_on_a_heartbeat_now_and_then(
    fast: World, clock: Clock
) -> None:
    silent = fast.store.register_process(ProcessInfo("host-b", 9, "boot-b", ProcessKind.RUN))
    clock.advance(PROCESS_ROWS_KEEP_SECONDS + 1)
    live, _ = other_process(fast)
    try:
        live_id = live.register(ProcessKind.RUN)
        wait_for(lambda: fast.store.get_process(silent.id) is None, 5, "the silent row to go")
        assert fast.store.get_process(live_id) is not None
        # Pruned on the first beat, then not again for PRUNE_PROCESSES_EVERY_SECONDS: cheap.
        later = fast.store.register_process(ProcessInfo("host-c", 9, "boot-c", ProcessKind.RUN))
        clock.advance(PROCESS_ROWS_KEEP_SECONDS + 1)
        time.sleep(20 * fast.settings.state.heartbeat)
        assert fast.store.get_process(later.id) is not None
        assert fast.store.get_process(live_id) is not None, "a live process beats: never pruned"
    finally:
        live.close()


def test_a_terminals_deploy_is_left_to_the_terminal_while_a_robot_run_idles_beside_it(
    world_for: WorldFactory,
) -> None:
    world = world_for(state={"heartbeat": 0.02, "lease": 1})
    terminal = world.service.register(ProcessKind.DEPLOY)
    deploy = world.request(user=Actor(ActorKind.CLI, "ops"), source=Source.CLI)
    robot, _ = other_process(world)
    robot.start()
    try:
        time.sleep(0.3)  # the robot's idle workers look at the queue, beat and watch leases
        assert world.service.get(deploy.id).state is DeployState.QUEUED
        final = world.run(deploy.id)  # `robot deploy` claims and runs it itself
    finally:
        robot.stop(1)
        robot.close()
    assert (final.state, final.owner_id) == (DeployState.SUCCEEDED, terminal)
