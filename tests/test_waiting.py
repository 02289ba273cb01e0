"""CI waits that hold no worker, one Slack root per deploy, wake-ups across processes.

Real `robot run` processes against the fake Slack and GitHub, on one SQLite file and on the
real PostgreSQL; a second robot process, when a test needs one, is built in the test process
(the whole `robot run` wiring, without its workers) so that it only requests and shows.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from bot.app import Robot, build_robot
from bot.config import load_settings
from bot.models import Deploy, DeployRequest, DeployState, Source
from bot.store import SqlStore
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack, Message
from tests.support.harness import make_git_repo, slack_user, write_config
from tests.support.postgres import PostgresServer
from tests.support.rig import (
    CHANNEL,
    robot_environ,
    root_text,
    runs,
    slack_section,
    slash,
    start_robot_process,
    step_command,
    stop_robot_processes,
)
from tests.support.wait import wait_for

pytestmark = pytest.mark.slow  # real robot processes, a real PostgreSQL

API = "acme/api"  # gated on ci/test
WEB = "acme/web"  # no gate
WAIT = 30.0


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'robot.db'}"
    server: PostgresServer = request.getfixturevalue("pg_server")
    return server.new_database()


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@dataclass
class World:
    """One config (workers: 1), its store, and the `robot run` processes started on it."""

    tmp_path: Path
    github: FakeGitHub
    slack: FakeSlack
    config: Path
    store: SqlStore
    folders: dict[str, Path]
    procs: list[tuple[subprocess.Popen[bytes], BinaryIO]] = field(default_factory=list)
    requesters: list[Robot] = field(default_factory=list)

    def start_robot(self) -> subprocess.Popen[bytes]:
        connected = self.slack.total_connections
        proc, out = start_robot_process(self.config, self.tmp_path / f"robot-{len(self.procs) + 1}.log")
        self.procs.append((proc, out))
        self.slack.wait_connected(timeout=WAIT, total=connected + 1)
        return proc

    def requester(self) -> Robot:
        """Another robot process's core and Slack notifier, in this process, with no workers."""
        robot = build_robot(load_settings(self.config, robot_environ()), robot_environ())
        robot.outbox.start()
        robot.notifier.start()
        self.requesters.append(robot)
        return robot

    def deploy(self, deploy_id: int) -> Deploy:
        found = self.store.get_deploy(deploy_id)
        assert found is not None, f"no deploy #{deploy_id}"
        return found

    def wait_state(self, deploy_id: int, state: DeployState, timeout: float = WAIT) -> Deploy:
        wait_for(lambda: self.deploy(deploy_id).state is state, timeout, f"#{deploy_id} {state.value}")
        return self.deploy(deploy_id)

    def root_posts(self, deploy_id: int) -> list[Any]:
        """Every top-level chat.postMessage made for the deploy (its root: one, ever)."""
        title = re.compile(rf"Deploy #{deploy_id} ")
        return [
            c
            for c in self.slack.calls_to("chat.postMessage")
            if not c.args.get("thread_ts") and title.search(str(c.args.get("text", "")))
        ]

    def root(self, deploy: Deploy) -> Message:
        assert deploy.root_ts is not None and deploy.channel is not None
        return self.slack.message(deploy.channel, deploy.root_ts)

    def close(self) -> None:
        for robot in self.requesters:
            robot.notifier.stop()
            robot.outbox.stop(2.0)
            robot.core.close()
        stop_robot_processes(self.procs)
        self.store.close()


@pytest.fixture
def world(tmp_path: Path, github: FakeGitHub, slack: FakeSlack, url: str) -> Iterator[World]:
    folders = {repo: make_git_repo(tmp_path / repo.replace("/", "-")) for repo in (API, WEB)}
    github.add_repo(API)
    github.add_repo(WEB)

    def env(repo: str) -> dict[str, Any]:
        return {"production": {"folder": str(folders[repo]), "commands": [step_command(folders[repo])]}}

    repos = {
        API: {
            "channel": CHANNEL,
            "environments": env(API),
            "required_contexts": ["ci/test"],
            "ci_timeout": 120,
        },
        WEB: {"channel": CHANNEL, "environments": env(WEB)},
    }
    config = write_config(
        tmp_path,
        github.url,
        repos,
        slack=slack_section(slack),
        state={"url": url, "heartbeat": 0.5, "lease": 2},
        deploys={"workers": 1, "ci_poll_interval": 0.2, "kill_grace": 1},
    )
    made = World(tmp_path, github, slack, config, SqlStore.from_url(url), folders)
    try:
        yield made
    finally:
        made.close()


def payload_thread(github: FakeGitHub, deploy: Deploy) -> object:
    (deployment,) = [
        d for d in github.deployments(deploy.repo) if d.payload.get("robot_deploy_id") == deploy.id
    ]
    return deployment.payload.get("slack_thread_ts")


def test_pending_ci_holds_no_worker_and_green_runs_it_under_its_one_root(world: World) -> None:
    github, slack = world.github, world.slack
    world.start_robot()
    sha = github.head(API, "main")
    github.set_status(API, sha, "ci/test", "pending")
    assert "Deploy #1 queued" in slash(slack, API)
    waiting = world.wait_state(1, DeployState.WAITING)
    assert waiting.waiting_for is not None and "ci/test pending" in waiting.waiting_for
    wait_for(lambda: "waiting" in root_text(slack, world.deploy(1)), WAIT, "root of #1 shows waiting")
    # workers: 1, and the one worker is not sleeping on #1: another repo's deploy runs now.
    assert "Deploy #2 queued" in slash(slack, WEB)
    assert world.wait_state(2, DeployState.SUCCEEDED).state is DeployState.SUCCEEDED
    assert world.deploy(1).state is DeployState.WAITING
    assert github.deployments(API) == []  # no GitHub deployment while CI is pending
    github.set_status(API, sha, "ci/test", "success")
    final = world.wait_state(1, DeployState.SUCCEEDED)
    assert runs(world.folders[API]) == ["start 1", "end 1"]
    assert len(world.root_posts(1)) == 1
    wait_for(lambda: "succeeded" in root_text(slack, world.deploy(1)), WAIT, "root of #1 updated in place")
    assert payload_thread(github, final) == final.message_ts == final.root_ts


def test_failed_ci_blocks_a_waiting_deploy_and_cancel_ends_one(world: World) -> None:
    github, slack = world.github, world.slack
    world.start_robot()
    sha = github.head(API, "main")
    github.set_status(API, sha, "ci/test", "pending")
    assert "Deploy #1 queued" in slash(slack, API)
    world.wait_state(1, DeployState.WAITING)
    github.set_status(API, sha, "ci/test", "failure", target_url="https://ci.test/1")
    blocked = world.wait_state(1, DeployState.BLOCKED)
    assert blocked.error is not None and blocked.error.startswith("CI failed: ci/test")
    second = github.push(API, "main")
    github.set_status(API, second, "ci/test", "pending")
    assert "Deploy #2 queued" in slash(slack, API)
    world.wait_state(2, DeployState.WAITING)
    assert "Deploy #2 cancelled before it started" in slash(slack, "cancel 2")
    cancelled = world.wait_state(2, DeployState.CANCELLED)
    assert cancelled.error == "cancelled while waiting for CI"
    wait_for(lambda: "cancelled" in root_text(slack, world.deploy(2)), WAIT, "root of #2 shows cancelled")
    github.set_status(API, second, "ci/test", "success")  # too late: nothing runs
    assert github.deployments(API) == [] and runs(world.folders[API]) == []
    assert [len(world.root_posts(i)) for i in (1, 2)] == [1, 1]


def test_a_deploy_requested_in_one_process_starts_in_another_at_once_under_one_root(world: World) -> None:
    github = world.github
    world.start_robot()
    requester = world.requester()
    delays = []
    for _ in range(8):
        github.push(WEB, "main")
        alice = slack_user("U0ALICE01")
        deploy, created = requester.core.service.request(WEB, user=alice, source=Source.COMMAND)
        assert created
        final = world.wait_state(deploy.id, DeployState.SUCCEEDED)
        assert final.created_at is not None and final.started_at is not None
        delays.append((final.started_at - final.created_at).total_seconds())
    # Woken by the store's feed, not by a poll: well within a second, every time.
    assert statistics.median(delays) < 0.4 and max(delays) < 1.0, delays
    for deploy in world.store.list_deploys(WEB):
        assert len(world.root_posts(deploy.id)) == 1, deploy.id
        assert payload_thread(github, deploy) == deploy.root_ts == deploy.message_ts
    last = world.store.list_deploys(WEB, limit=1)[0]
    wait_for(
        lambda: "succeeded" in root_text(world.slack, world.deploy(last.id)), WAIT, "root updated in place"
    )
    assert world.root(world.deploy(last.id)).updates >= 1


def test_the_store_feed_wakes_on_a_commit_and_stays_quiet_otherwise(url: str) -> None:
    store, writer = SqlStore.from_url(url), SqlStore.from_url(url)
    feed = store.watch()
    try:
        feed.wait(1.0)  # connects (and reports: anything may have happened before)
        assert not feed.wait(0.5)  # quiet: no false wake-ups
        request = DeployRequest(API, "production", "main", "a" * 40, "U1", Source.COMMAND)
        threading.Timer(0.2, writer.create_deploy, args=(request,)).start()
        started = time.monotonic()
        assert feed.wait(5.0)
        assert time.monotonic() - started < 0.6
        assert not feed.wait(0.5)
    finally:
        feed.close()
        store.close()
        writer.close()
