"""Several robot processes on one store (a SQLite file, a real PostgreSQL): leases, takeovers, orphans.

Each robot is `robot deploy` as a real process (`python -m bot.cli deploy`, no Slack needed)
against the fake GitHub. Steps record `start <id> <time>` / `end <id> <time>` and, as they
start, every step of their environment still alive beside them: no two may overlap.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import psutil
import pytest

from bot.github import GitHubGateway
from bot.models import Deploy, DeployRequest, DeployState, ProcessInfo, ProcessKind, Source
from bot.store import SqlStore
from tests.fakes.github import FakeGitHub
from tests.support.harness import ROOT, TOKEN, environ, make_git_repo, run_cli, write_config
from tests.support.postgres import PostgresServer
from tests.support.wait import wait_for

pytestmark = pytest.mark.slow  # real robot processes, real steps, a real PostgreSQL

REPO = "acme/api"
ENV = "production"
LEASE = {"heartbeat": 0.5, "lease": 2}
WAIT = 30.0

# Records its start and end in the log named by argv[1], and the pids of the other steps of the
# folder (its environment) still alive as it starts; runs argv[2] seconds, and for as long as
# the file hold-<id> exists (at most a minute).
STEP = """
import os, pathlib, sys, time
deploy = os.environ["DEPLOY_ID"]
log = pathlib.Path(sys.argv[1])

def alive(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] != b"Z"
    except OSError:
        return False

def record(text):
    with open(log, "a") as handle:
        handle.write(text + "\\n")

others = [p.read_text() for p in pathlib.Path(".").glob("step-*.pid") if p.name != f"step-{deploy}.pid"]
beside = [pid for pid in others if pid and alive(int(pid))]
pathlib.Path(f"step-{deploy}.pid").write_text(str(os.getpid()))
record(f"start {deploy} {time.time():.6f} beside={','.join(beside)}")
end, hold = time.monotonic() + float(sys.argv[2]), pathlib.Path(f"hold-{deploy}")
deadline = time.monotonic() + 60
while (time.monotonic() < end or hold.exists()) and time.monotonic() < deadline:
    time.sleep(0.05)
record(f"end {deploy} {time.time():.6f}")
"""


@dataclass(frozen=True)
class Interval:
    deploy: int
    start: float
    end: float | None
    beside: str


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'robot.db'}"
    server: PostgresServer = request.getfixturevalue("pg_server")
    return server.new_database()


class Robots:
    """`robot deploy` processes on one config, each writing to its own log file."""

    def __init__(self, tmp_path: Path, config: Path) -> None:
        self.tmp_path = tmp_path
        self.config = config
        self.procs: list[tuple[subprocess.Popen[bytes], BinaryIO]] = []

    def deploy(self, sha: str) -> subprocess.Popen[bytes]:
        out = (self.tmp_path / f"robot-{len(self.procs) + 1}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "deploy", f"{REPO}@{sha}", "--config", str(self.config)],
            cwd=ROOT,
            env=environ(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        self.procs.append((proc, out))
        return proc

    def output(self, number: int) -> str:
        return (self.tmp_path / f"robot-{number}.log").read_text()

    def stop_all(self) -> None:
        for proc, out in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            out.close()


@dataclass
class Setup:
    store: SqlStore
    robots: Robots
    checkout: Path
    log: Path
    github: FakeGitHub

    def intervals(self) -> dict[int, Interval]:
        found: dict[int, Interval] = {}
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        for line in lines:
            word, deploy, at, *rest = line.split()
            number = int(deploy)
            if word == "start":
                assert number not in found, f"deploy #{number} started twice:\n" + "\n".join(lines)
                found[number] = Interval(number, float(at), None, rest[0].removeprefix("beside="))
            else:
                found[number] = Interval(number, found[number].start, float(at), found[number].beside)
        return found

    def deploy(self, deploy_id: int) -> Deploy:
        found = self.store.get_deploy(deploy_id)
        assert found is not None, f"no deploy #{deploy_id}"
        return found

    def github_states(self, deploy: Deploy) -> list[str]:
        (found,) = [d for d in self.github.deployments(REPO) if d.payload.get("robot_deploy_id") == deploy.id]
        return [str(s["body"]["state"]) for s in found.statuses]

    def step_pid(self, deploy_id: int) -> int:
        path = self.checkout / f"step-{deploy_id}.pid"
        wait_for(lambda: path.exists() and path.read_text().strip() != "", WAIT, f"step of #{deploy_id}")
        return int(path.read_text())


@pytest.fixture
def setup(tmp_path: Path, github: FakeGitHub, url: str) -> Iterator[Setup]:
    github.add_repo(REPO)
    checkout = make_git_repo(tmp_path / "checkout")
    script = tmp_path / "step.py"
    script.write_text(STEP)
    log = tmp_path / "intervals.log"
    step = [sys.executable, str(script), str(log), "0.3"]
    repos = {REPO: {"environments": {ENV: {"folder": str(checkout), "commands": [step]}}}}
    config = write_config(tmp_path, github.url, repos, state={"url": url, **LEASE})
    store = SqlStore.from_url(url)
    robots = Robots(tmp_path, config)
    try:
        yield Setup(store, robots, checkout, log, github)
    finally:
        robots.stop_all()
        for pid_file in checkout.glob("step-*.pid"):
            with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)
        store.close()


def new_sha(setup: Setup) -> str:
    """A new commit on main: each deploy of one environment needs its own (dedupe)."""
    return setup.github.push(REPO, "main")


def no_overlap(intervals: dict[int, Interval]) -> None:
    """No step started while another of its environment was alive, and the records agree."""
    assert all(i.beside == "" for i in intervals.values()), intervals
    ordered = sorted(intervals.values(), key=lambda i: i.start)
    for before, after in itertools.pairwise(ordered):
        assert before.end is not None and before.end <= after.start, (before, after)


def alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def test_a_second_robot_interrupts_nothing_and_its_deploy_waits_its_turn(setup: Setup) -> None:
    first_sha, second_sha = new_sha(setup), new_sha(setup)
    (setup.checkout / "hold-1").touch()
    first = setup.robots.deploy(first_sha)
    setup.step_pid(1)
    second = setup.robots.deploy(second_sha)
    wait_for(lambda: setup.store.get_deploy(2) is not None, WAIT, "deploy #2 queued")
    # Held for several leases: the first robot's heartbeats keep it, the second takes nothing.
    time.sleep(3 * LEASE["lease"])
    assert setup.deploy(1).state is DeployState.RUNNING
    assert setup.deploy(2).state is DeployState.QUEUED
    (setup.checkout / "hold-1").unlink()
    assert first.wait(timeout=WAIT) == 0, setup.robots.output(1)
    assert second.wait(timeout=WAIT) == 0, setup.robots.output(2)
    assert [setup.deploy(i).state for i in (1, 2)] == [DeployState.SUCCEEDED] * 2
    intervals = setup.intervals()
    assert sorted(intervals) == [1, 2]
    no_overlap(intervals)
    assert setup.github_states(setup.deploy(1))[-1] == "success"
    owners = {setup.deploy(i).owner_id for i in (1, 2)}
    assert len(owners) == 2 and None not in owners, "each ran in its own robot process"
    for owner in owners:
        process = setup.store.get_process(owner)  # type: ignore[arg-type]
        assert process is not None and process.kind is ProcessKind.DEPLOY and process.stopped_at is not None


def test_a_sigkilled_owners_deploy_is_taken_over_after_the_lease_and_its_orphan_killed(setup: Setup) -> None:
    first_sha, second_sha = new_sha(setup), new_sha(setup)
    (setup.checkout / "hold-1").touch()  # held until killed: it never ends by itself
    first = setup.robots.deploy(first_sha)
    orphan = setup.step_pid(1)
    wait_for(lambda: setup.deploy(1).step_pgid == orphan, WAIT, "the step's group recorded")
    second = setup.robots.deploy(second_sha)
    wait_for(lambda: setup.store.get_deploy(2) is not None, WAIT, "deploy #2 queued")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    killed_at = time.monotonic()
    wait_for(lambda: setup.deploy(1).state is DeployState.INTERRUPTED, WAIT, "#1 taken over")
    took = time.monotonic() - killed_at
    assert not alive(orphan), "the orphaned step's group is killed before #2 may start"
    assert second.wait(timeout=WAIT) == 0, setup.robots.output(2)
    interrupted = setup.deploy(1)
    assert interrupted.error is not None and "sent no heartbeat for over 2 s" in interrupted.error
    assert took <= LEASE["lease"] + 5, f"taken over {took:.1f} s after the kill"
    wait_for(lambda: setup.github_states(interrupted)[-1:] == ["error"], WAIT, "GitHub told: error")
    assert setup.github_states(interrupted) == ["queued", "in_progress", "error"]
    assert setup.deploy(2).state is DeployState.SUCCEEDED
    assert setup.github_states(setup.deploy(2)) == ["queued", "in_progress", "success"]
    assert setup.store.get_lock(REPO, ENV) is None, "same machine: the orphan is dead, nothing to check"
    intervals = setup.intervals()
    assert sorted(intervals) == [1, 2] and intervals[1].end is None, "#1 never ended by itself"
    assert intervals[2].end is not None and intervals[2].beside == "", "#2 ran once, alone"


def test_an_owner_on_another_machine_gets_its_environment_locked_until_someone_checks(
    setup: Setup,
) -> None:
    # A robot on host-b claimed #1 and recorded its step's group, then went silent.
    first_sha, queued_sha, later_sha = (new_sha(setup) for _ in range(3))
    owner = setup.store.register_process(ProcessInfo("host-b", 4242, "boot-of-host-b", ProcessKind.RUN))
    first, _ = setup.store.create_deploy(
        DeployRequest(REPO, ENV, first_sha, first_sha, "U1", Source.COMMAND, channel="C1")
    )
    assert setup.store.claim_next(owner=owner.id) is not None
    gateway = GitHubGateway(TOKEN, setup.github.url, seconds_between_requests=0, seconds_between_writes=0)
    deployment = gateway.create_deployment(REPO, first_sha, ENV, [], {"robot_deploy_id": first.id}, "#1")
    setup.store.update_deploy(first.id, github_deployment_id=deployment)
    # A process of this machine with the same group id must not be killed: the id was host-b's.
    bystander = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    try:
        assert setup.store.record_step(first.id, bystander.pid)
        queued, _ = setup.store.create_deploy(
            DeployRequest(REPO, ENV, queued_sha, queued_sha, "U1", Source.COMMAND)
        )
        time.sleep(LEASE["lease"] + 0.5)  # host-b's lease runs out

        refused = run_cli(setup.robots.config, "deploy", f"{REPO}@{later_sha}")
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "is locked by robot" in refused.stderr
        assert f"step of deploy #{first.id} may still be running on host-b; unlock when checked" in (
            refused.stderr
        )
        assert setup.deploy(first.id).state is DeployState.INTERRUPTED
        assert setup.github_states(setup.deploy(first.id))[-1] == "error"
        assert bystander.poll() is None, "nothing is killed on behalf of another machine"
        time.sleep(2 * LEASE["heartbeat"])
        assert setup.deploy(queued.id).state is DeployState.QUEUED, "nothing starts there while locked"
    finally:
        bystander.kill()
        bystander.wait()

    lock = setup.store.remove_lock(REPO, ENV, "slack:U7")
    assert lock is not None and lock.locked_by == "robot"
    served = run_cli(setup.robots.config, "deploy", f"{REPO}@{queued_sha}")
    assert served.returncode == 0, served.stdout + served.stderr
    assert "already queued; following it" in served.stdout
    assert setup.deploy(queued.id).state is DeployState.SUCCEEDED
    assert sorted(setup.intervals()) == [queued.id]
