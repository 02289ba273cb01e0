"""One merge poller among several `robot run` processes sharing one store (one SQLite file, or PostgreSQL).

Each test starts real `robot run` processes against the fake Slack and GitHub: a merge is announced
once whoever polls, the poller fails over within the lease + one poll interval after a SIGKILL,
and a merge's auto-deploy runs exactly once through CI re-runs, a kill and a lock.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from bot.models import AutoDeployStatus, Deploy, DeployState
from bot.store import SqlStore
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.support.harness import make_git_repo, write_config
from tests.support.postgres import PostgresServer
from tests.support.rig import (
    CHANNEL,
    PY,
    WAIT,
    slack_section,
    start_robot_process,
    stop_robot_processes,
)
from tests.support.wait import wait_for

pytestmark = pytest.mark.slow  # real robot processes, the loopback fakes, PostgreSQL

API = "acme/api"
LEASE = {"heartbeat": 0.5, "lease": 2.0}
POLL_INTERVAL = 1.0  # write_config's github.poll_interval
LEADS = "merge polling: this robot polls now"
FAILOVER_SLACK = 2.0  # posting to the fake Slack and the test's own polling, on a loaded machine


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake
    assert fake.server_errors == []


@pytest.fixture(params=["sqlite", pytest.param("postgresql")])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'robot.db'}"
    server: PostgresServer = request.getfixturevalue("pg_server")
    return server.new_database()


class Replicas:
    """`robot run` processes on one config, each logging to its own file (to tell the leader)."""

    def __init__(self, config: Path, folder: Path) -> None:
        self.config = config
        self.folder = folder
        self.procs: list[tuple[subprocess.Popen[bytes], BinaryIO]] = []

    def start(self) -> int:
        """Start one more robot; returns its index."""
        index = len(self.procs)
        self.procs.append(start_robot_process(self.config, self.folder / f"robot-{index}.log"))
        return index

    def log(self, index: int) -> str:
        return (self.folder / f"robot-{index}.log").read_text(errors="replace")

    def leaders(self) -> list[int]:
        """The robots that said they took the poller over (and are still alive)."""
        return [i for i, (proc, _) in enumerate(self.procs) if proc.poll() is None and LEADS in self.log(i)]

    def kill(self, index: int) -> None:
        proc, _ = self.procs[index]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        stop_robot_processes(self.procs)


class Fleet:
    """Two robots on one store, the fakes, and what the tests look at."""

    def __init__(self, replicas: Replicas, store: SqlStore, github: FakeGitHub, slack: FakeSlack) -> None:
        self.replicas = replicas
        self.store = store
        self.github = github
        self.slack = slack
        self.merges = 0

    def merge(self, title: str) -> str:
        self.merges += 1
        sha = self.github.push(API, "main", message=f"Merge pull request #{self.merges}\n\n{title}")
        self.github.add_pull_for_commit(API, sha, self.merges, title, user="alice", merged_by="bob")
        return sha

    def announcements(self, title: str) -> int:
        """Top-level channel messages that announce the pull request titled ``title``."""
        top = [m for m in self.slack.messages(CHANNEL) if m.thread_ts in (None, m.ts)]
        return sum(1 for m in top if title in json.dumps(m.blocks, ensure_ascii=False) + m.text)

    def said(self, text: str) -> int:
        return sum(1 for m in self.slack.messages(CHANNEL) if text in m.text)

    def deploys(self) -> list[Deploy]:
        return self.store.list_deploys(API)


@pytest.fixture
def fleet_for(tmp_path: Path, github: FakeGitHub, slack: FakeSlack, store_url: str) -> Iterator[Any]:
    made: list[tuple[Replicas, SqlStore]] = []

    def make(**repo: Any) -> Fleet:
        github.add_repo(API)
        folder = make_git_repo(tmp_path / "checkout")
        envs = {"production": {"folder": str(folder), "commands": [[PY, "-c", "pass"]]}}
        repos = {API: {"channel": CHANNEL, "environments": envs, **repo}}
        state = {"url": store_url, **LEASE}
        config = write_config(tmp_path, github.url, repos, slack=slack_section(slack), state=state)
        store = SqlStore.from_url(store_url)
        replicas = Replicas(config, tmp_path)
        made.append((replicas, store))
        replicas.start()
        wait_for(lambda: replicas.leaders() == [0], WAIT, "the first robot to lead the poller")
        wait_for(lambda: store.get_head(API) is not None, WAIT, "the first poll")
        replicas.start()
        slack.wait_connected(timeout=WAIT, total=2)
        wait_for(lambda: "deploy robot connected" in replicas.log(1), WAIT, "the second robot")
        return Fleet(replicas, store, github, slack)

    yield make
    for replicas, store in made:
        replicas.stop_all()
        store.close()


def test_one_poller_announces_once_and_another_takes_over_after_a_kill(fleet_for: Any) -> None:
    fleet: Fleet = fleet_for()
    fleet.merge("First change")
    wait_for(lambda: fleet.announcements("First change") == 1, WAIT, "the first announcement")
    time.sleep(3 * POLL_INTERVAL)
    assert fleet.announcements("First change") == 1
    assert fleet.replicas.leaders() == [0], "the second robot only tries to lead"
    killed_at = time.monotonic()
    fleet.replicas.kill(0)
    # Merged while nobody polls: the next leader announces it, once.
    fleet.merge("Merged while the poller was dead")
    wait_for(
        lambda: fleet.announcements("Merged while the poller was dead") == 1, WAIT, "the new leader's poll"
    )
    failover = time.monotonic() - killed_at
    assert fleet.replicas.leaders() == [1]
    fleet.merge("After the fail-over")
    wait_for(lambda: fleet.announcements("After the fail-over") == 1, WAIT, "the next announcement")
    time.sleep(3 * POLL_INTERVAL)
    twice = [
        t
        for t in ("First change", "Merged while the poller was dead", "After the fail-over")
        if fleet.announcements(t) != 1
    ]
    print(f"\npoller fail-over after SIGKILL: {failover:.2f} s; merges announced twice: {len(twice)}")
    assert twice == []
    assert failover <= LEASE["lease"] + POLL_INTERVAL + FAILOVER_SLACK, f"fail-over took {failover:.1f} s"


def test_red_ci_rerun_green_deploys_once_even_after_the_leader_dies(fleet_for: Any) -> None:
    fleet: Fleet = fleet_for(
        on_merge="deploy", auto_deploy="production", required_contexts=["ci/test"], ci_timeout=120
    )
    sha = fleet.merge("Red then green")
    fleet.github.set_status(API, sha, "ci/test", "failure")
    wait_for(lambda: fleet.announcements("Red then green") == 1, WAIT, "the announcement")
    wait_for(lambda: fleet.said("CI failed (ci/test failure)") == 1, WAIT, "the wait to be said")
    claim = fleet.store.get_auto_deploy(API, "production", sha)
    assert claim is not None and claim.status is AutoDeployStatus.PENDING and fleet.deploys() == []
    # The leader dies between the claim and the queued deploy: the claim is in the store.
    fleet.replicas.kill(0)
    fleet.github.set_status(API, sha, "ci/test", "pending")  # re-run
    time.sleep(LEASE["lease"] + 2 * POLL_INTERVAL)
    assert fleet.deploys() == []
    fleet.github.set_status(API, sha, "ci/test", "success")
    wait_for(lambda: len(fleet.deploys()) == 1, WAIT, "the auto-deploy")
    (deploy,) = fleet.deploys()
    wait_for(lambda: fleet.store.get_deploy(deploy.id).state.is_final, WAIT, "the deploy to end")  # type: ignore[union-attr]
    time.sleep(3 * POLL_INTERVAL)
    final = fleet.store.get_deploy(deploy.id)
    assert final is not None and (final.state, final.sha, final.requested_by) == (
        DeployState.SUCCEEDED,
        sha,
        "github:bob",
    )
    assert len(fleet.deploys()) == 1 and len(fleet.github.deployments(API)) == 1
    assert fleet.announcements("Red then green") == 1 and fleet.said("CI failed") == 1


def test_a_merge_held_by_a_lock_deploys_once_when_unlocked(fleet_for: Any) -> None:
    fleet: Fleet = fleet_for(on_merge="deploy", auto_deploy="production")
    fleet.store.set_lock(API, "production", "U7", "release freeze")
    sha = fleet.merge("Held by the freeze")
    wait_for(lambda: fleet.announcements("Held by the freeze") == 1, WAIT, "the announcement")
    wait_for(lambda: fleet.said("is held") == 1, WAIT, "the hold to be said")
    time.sleep(3 * POLL_INTERVAL)
    assert fleet.deploys() == [] and fleet.said("is held") == 1
    fleet.store.remove_lock(API, "production", "slack:U7")
    wait_for(lambda: len(fleet.deploys()) == 1, WAIT, "the held auto-deploy")
    (deploy,) = fleet.deploys()
    assert deploy.sha == sha
    wait_for(lambda: fleet.store.get_deploy(deploy.id).state.is_final, WAIT, "the deploy to end")  # type: ignore[union-attr]
    time.sleep(3 * POLL_INTERVAL)
    assert len(fleet.deploys()) == 1 and len(fleet.github.deployments(API)) == 1
    done = fleet.store.get_auto_deploy(API, "production", sha)
    assert done is not None and (done.status, done.deploy_id) == (AutoDeployStatus.QUEUED, deploy.id)


def test_a_merge_held_by_a_lock_that_expires_deploys_once_and_the_expiry_is_told_once(
    fleet_for: Any,
) -> None:
    fleet: Fleet = fleet_for(on_merge="deploy", auto_deploy="production")
    # Through Slack, as users lock: one of the two robots takes the command and knows the end.
    envelope = fleet.slack.send_slash_command(
        command="/deploy",
        text="lock acme/api for 6s : release freeze",
        user_id="U0ALICE01",
        channel_id="C0HERE",
    )
    fleet.slack.wait_ack(envelope, timeout=WAIT)
    wait_for(lambda: fleet.store.get_lock(API, "production") is not None, WAIT, "the lock")
    sha = fleet.merge("Held until the freeze ends")
    wait_for(lambda: fleet.said("is held") == 1, WAIT, "the hold to be said")
    assert fleet.deploys() == []
    wait_for(lambda: len(fleet.deploys()) == 1, WAIT, "the held auto-deploy, after the expiry")
    (deploy,) = fleet.deploys()
    assert deploy.sha == sha
    wait_for(lambda: fleet.said("unlocked:") == 1, WAIT, "the expiry to be told")
    wait_for(lambda: fleet.store.get_deploy(deploy.id).state.is_final, WAIT, "the deploy to end")  # type: ignore[union-attr]
    time.sleep(3 * POLL_INTERVAL)
    assert (
        fleet.said("🔓 acme/api production unlocked: <@U0ALICE01>'s lock for 6 s expired (release freeze)")
        == 1
    )
    assert fleet.said("unlocked:") == 1 and fleet.said("is held") == 1
    assert len(fleet.deploys()) == 1 and len(fleet.github.deployments(API)) == 1
    unlocks = [e for e in fleet.store.lock_history(API, "production") if e.action == "unlocked"]
    assert [e.actor for e in unlocks] == ["robot:robot"]


def test_an_announcement_still_queued_when_its_poller_is_killed_is_posted_once_by_the_next(
    fleet_for: Any,
) -> None:
    fleet: Fleet = fleet_for()
    # Slack holds the leader's post (429, retry in a minute): claimed, owed, not posted.
    fleet.slack.rate_limit_next("chat.postMessage", times=1, retry_after=60)
    sha = fleet.merge("Queued when its poller died")
    wait_for(lambda: fleet.slack.served_429 >= 1, WAIT, "the leader's post to be held")
    head = fleet.store.get_head(API)
    assert head is not None and head.sha == sha and head.owed_from is not None
    killed_at = time.monotonic()
    fleet.replicas.kill(0)
    wait_for(lambda: fleet.announcements("Queued when its poller died") == 1, WAIT, "the next leader's post")
    posted_after = time.monotonic() - killed_at
    time.sleep(3 * POLL_INTERVAL)
    assert fleet.announcements("Queued when its poller died") == 1
    head = fleet.store.get_head(API)
    assert head is not None and (head.sha, head.owed_from) == (sha, None)
    assert "announcing the merge a stopped robot claimed and never posted" in fleet.replicas.log(1)
    print(f"\nowed announcement posted {posted_after:.2f} s after its poller's SIGKILL")
    assert posted_after <= LEASE["lease"] + POLL_INTERVAL + FAILOVER_SLACK + LEASE["heartbeat"]
