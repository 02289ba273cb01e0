"""Restarting `robot run` while deploys run: a rolling restart under load, and a terminal's deploy.

Real `robot run` processes (and `robot deploy` in a terminal) on one SQLite file or a real
PostgreSQL, against the fake Slack (each slash command goes to a replica picked at random) and
the fake GitHub. Steps append `start|end|term <id> <repo:env> <time> <robot pid>` to one file:
no two may overlap in one environment, none may run twice.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.models import Deploy, DeployState
from bot.store import SqlStore
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import SpreadingSlack
from tests.support.harness import ROOT, make_git_repo, write_config
from tests.support.postgres import PostgresServer
from tests.support.rig import (
    CHANNEL,
    PY,
    RobotProcess,
    reply,
    robot_environ,
    slack_section,
    start_robot_process,
    stop_robot_processes,
)
from tests.support.wait import wait_for

pytestmark = pytest.mark.slow  # real robot processes, the loopback fakes, PostgreSQL

REPOS = ("acme/api", "acme/web")
ENVS = ("staging", "production")
WHERE = [f"{repo}:{env}" for repo in REPOS for env in ENVS]
LEASE = {"heartbeat": 0.5, "lease": 2}
DEPLOYS = {"workers": 2, "ci_poll_interval": 0.2, "kill_grace": 2, "stop_timeout": 8}
STEP_SECONDS = 1.0
REQUEST_EVERY = 0.3  # seconds between slash commands: 4 environments stay busy
# A robot is stopped while one of its steps has run less than this (the step has more left
# than the stop takes to reach it, so it is surely cancelled).
FRESH_SECONDS = 0.3
WAIT = 30.0
QUEUED = re.compile(r"Deploy #(\d+) queued")
STOPPED = "the robot stopped"

# Records its start, end, or the SIGTERM that ends it early, in the file named by argv[1];
# runs argv[2] seconds, and then for as long as the file hold-<id> exists (at most a minute).
STEP = """
import os, pathlib, signal, sys, time
deploy, where = os.environ["DEPLOY_ID"], os.environ["DEPLOY_REPO"] + ":" + os.environ["DEPLOY_ENV"]
def record(kind):
    with open(sys.argv[1], "a") as out:
        out.write(f"{kind} {deploy} {where} {time.time():.6f} {os.getppid()}\\n")
def stopped(signum, frame):
    record("term")
    sys.exit(143)
signal.signal(signal.SIGTERM, stopped)
record("start")
time.sleep(float(sys.argv[2]))
deadline = time.monotonic() + 60
while pathlib.Path(f"hold-{deploy}").exists() and time.monotonic() < deadline:
    time.sleep(0.05)
record("end")
"""


@dataclass
class Run:
    """One step run: where, by which robot process, from start to end (or SIGTERM)."""

    deploy: int
    where: str
    robot_pid: int
    start: float
    end: float | None = None
    termed: bool = False


@dataclass
class Robot:
    """A `robot run` process, its Socket Mode connection in the fake, and when it exited."""

    process: RobotProcess
    connection: int
    exited_at: float | None = None  # unix time

    @property
    def pid(self) -> int:
        return self.process[0].pid


@dataclass
class World:
    """One config on one store, the robots started on it, and the step records."""

    tmp_path: Path
    github: FakeGitHub
    slack: SpreadingSlack
    config: Path
    store: SqlStore
    checkout: Path
    runs_file: Path
    robots: list[Robot] = field(default_factory=list)
    terminals: list[RobotProcess] = field(default_factory=list)

    def start_robot(self) -> Robot:
        """One more `robot run`, once its Socket Mode connection is up."""
        before = self.slack.connection_ids()
        process = start_robot_process(self.config, self.tmp_path / f"robot-{len(self.robots)}.log")
        self.slack.wait_for(lambda: bool(self.slack.connection_ids() - before), WAIT, "a new connection")
        robot = Robot(process, max(self.slack.connection_ids() - before))
        self.robots.append(robot)
        return robot

    def sigterm(self, robot: Robot) -> None:
        """Stop a robot as systemd does, and wait for it to exit (it must within its deadline)."""
        proc = robot.process[0]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=DEPLOYS["stop_timeout"] + 5) == 0, self.log(robot)[-3000:]
        robot.exited_at = time.time()

    def log(self, robot: Robot) -> str:
        return (self.tmp_path / f"robot-{self.robots.index(robot)}.log").read_text(errors="replace")

    def runs(self) -> dict[int, Run]:
        """Every step run by deploy id; a deploy whose step started twice fails here."""
        found: dict[int, Run] = {}
        lines = self.runs_file.read_text().splitlines() if self.runs_file.exists() else []
        for line in lines:
            kind, deploy, where, at, pid = line.split()
            number = int(deploy)
            if kind == "start":
                assert number not in found, f"deploy #{number} ran twice:\n" + "\n".join(lines)
                found[number] = Run(number, where, int(pid), float(at))
            else:
                found[number].end, found[number].termed = float(at), kind == "term"
        return found

    def deploy(self, deploy_id: int) -> Deploy:
        found = self.store.get_deploy(deploy_id)
        assert found is not None, f"no deploy #{deploy_id}"
        return found

    def owned_by(self, robot: Robot) -> list[Deploy]:
        """The deploys running in ``robot`` now."""
        running = self.store.list_deploys(states=[DeployState.RUNNING], limit=100)
        owners = {d.owner_id for d in running if d.owner_id is not None}
        pids = {o: p.pid for o in owners if (p := self.store.get_process(o)) is not None}
        return [d for d in running if d.owner_id is not None and pids.get(d.owner_id) == robot.pid]

    def fresh_in(self, robot: Robot) -> set[int]:
        """The deploys whose step ``robot`` started less than FRESH_SECONDS ago."""
        owned = {d.id for d in self.owned_by(robot)}
        now = time.time()
        return {
            i
            for i, r in self.runs().items()
            if i in owned and r.end is None and now - r.start < FRESH_SECONDS
        }

    def queued(self) -> set[int]:
        return {d.id for d in self.store.list_deploys(states=[DeployState.QUEUED], limit=1000)}

    def close(self) -> None:
        stop_robot_processes([r.process for r in self.robots])
        for proc, out in self.terminals:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            out.close()
        self.store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'robot.db'}"
    server: PostgresServer = request.getfixturevalue("pg_server")
    return server.new_database()


@pytest.fixture
def world(tmp_path: Path, github: FakeGitHub, url: str) -> Iterator[World]:
    checkout = make_git_repo(tmp_path / "checkout")
    script = tmp_path / "step.py"
    script.write_text(STEP)
    runs_file = tmp_path / "runs.log"
    step = {"folder": str(checkout), "commands": [[PY, str(script), str(runs_file), str(STEP_SECONDS)]]}
    repos = {}
    for repo in REPOS:
        github.add_repo(repo)
        repos[repo] = {"channel": CHANNEL, "environments": dict.fromkeys(ENVS, step)}
    with SpreadingSlack(seed=11) as slack:
        config = write_config(
            tmp_path,
            github.url,
            repos,
            slack=slack_section(slack),
            state={"url": url, **LEASE},
            deploys=DEPLOYS,
        )
        made = World(tmp_path, github, slack, config, SqlStore.from_url(url), checkout, runs_file)
        try:
            yield made
        finally:
            made.close()
        assert slack.server_errors == []


def no_overlap(runs: dict[int, Run]) -> None:
    """In each environment, every run ended (or was SIGTERMed) before the next one started."""
    for where in WHERE:
        ordered = sorted((r for r in runs.values() if r.where == where), key=lambda r: r.start)
        for before, after in itertools.pairwise(ordered):
            assert before.end is not None and before.end <= after.start, (before, after)


def final_statuses(world: World, deploy: Deploy) -> list[str]:
    """GitHub's final statuses of the deploy's one deployment (none: no deployment)."""
    found = [
        d for d in world.github.deployments(deploy.repo) if d.payload.get("robot_deploy_id") == deploy.id
    ]
    assert len(found) <= 1, f"#{deploy.id} has {len(found)} GitHub deployments"
    states = [str(s["body"]["state"]) for d in found for s in d.statuses]
    return [s for s in states if s in ("success", "failure", "error")]


class Load:
    """Slash commands at a steady pace, each a new commit to an environment picked at random."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.random = random.Random(7)
        self.sent: list[tuple[str, int]] = []  # envelope id, the connection it went to
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._send, name="load", daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _send(self) -> None:
        slack = self.world.slack
        for index in itertools.count():
            repo, env = self.random.choice(REPOS), self.random.choice(ENVS)
            self.world.github.push(repo, f"r{index}")
            with contextlib.suppress(RuntimeError, OSError):  # no live connection this instant
                envelope = slack.send_slash_command(
                    command="/deploy",
                    text=f"{repo}@r{index} to {env}",
                    user_id="U0ALICE01",
                    channel_id="C0HERE",
                )
                self.sent.append((envelope, slack.envelope(envelope).connection_id))
            if self._stop.wait(REQUEST_EVERY):
                return

    def answers(self) -> dict[str, str | None]:
        """Each envelope's answer (None: never acked, its connection closed under it)."""
        found: dict[str, str | None] = {}
        for envelope, _ in self.sent:
            try:
                ack = self.world.slack.wait_ack(envelope, timeout=5)
            except TimeoutError:
                found[envelope] = None
                continue
            text = str((ack.payload or {}).get("text", ""))
            if text.startswith("⏳"):
                text = str(self.world.slack.wait_response(envelope, timeout=WAIT).get("text", ""))
            found[envelope] = text
        return found


def test_a_rolling_restart_under_load_loses_nothing_and_runs_nothing_twice(world: World) -> None:
    a = world.start_robot()
    with Load(world) as load:
        wait_for(lambda: len(world.runs()) >= 3, WAIT, "robot A to run deploys")
        b = world.start_robot()  # B up before A stops
        wait_for(lambda: world.fresh_in(a) and world.queued(), WAIT, "A starting a step, others queued")
        queued_at_a_stop, fresh_in_a = world.queued(), world.fresh_in(a)
        world.sigterm(a)
        wait_for(lambda: any(r.robot_pid == b.pid for r in world.runs().values()), WAIT, "B to run one")
        c = world.start_robot()
        wait_for(lambda: world.fresh_in(b) and world.queued(), WAIT, "B starting a step, others queued")
        queued_at_b_stop, fresh_in_b = world.queued(), world.fresh_in(b)
        world.sigterm(b)
        wait_for(lambda: any(r.robot_pid == c.pid for r in world.runs().values()), WAIT, "C to run one")
    answers = load.answers()
    active = [DeployState.QUEUED, DeployState.WAITING, DeployState.RUNNING]
    wait_for(lambda: not world.store.list_deploys(states=active, limit=1), 60, "the queue to drain")

    stopped = {a.pid: a, b.pid: b}
    by_connection = {r.connection: r for r in world.robots}
    # A command is lost only on the socket of a robot that was closing it; each one answered
    # "queued" is a deploy in the store.
    for envelope, connection in load.sent:
        if answers[envelope] is None:
            assert by_connection[connection].pid in stopped, f"{envelope} unanswered by a live robot"
    requested = {int(m.group(1)) for text in answers.values() if text and (m := QUEUED.search(text))}
    deploys = {d.id: d for d in world.store.list_deploys(limit=10_000)}
    assert requested <= set(deploys) and len(requested) >= 10, answers

    runs = world.runs()
    no_overlap(runs)
    cancelled: list[int] = []
    for deploy in deploys.values():
        run = runs.get(deploy.id)
        finals = final_statuses(world, deploy)
        if deploy.state is DeployState.SUCCEEDED:
            assert run is not None and run.end is not None and not run.termed, (deploy, run)
            assert finals == ["success"], (deploy.id, finals)
            continue
        # The only other end: a deploy its own robot was running when that robot was stopped.
        assert deploy.state is DeployState.CANCELLED, deploy
        assert deploy.error is not None and STOPPED in deploy.error, deploy
        assert deploy.owner_id is not None
        owner = world.store.get_process(deploy.owner_id)
        assert owner is not None and owner.pid in stopped, (deploy, owner)
        robot = stopped[owner.pid]
        assert robot.exited_at is not None and deploy.finished_at is not None
        assert deploy.finished_at.timestamp() <= robot.exited_at, "cancelled within the shutdown deadline"
        assert run is None or (run.robot_pid == owner.pid and run.termed), (deploy, run)
        assert finals in ([], ["error"]), (deploy.id, finals)
        cancelled.append(deploy.id)
    lost = sum(1 for text in answers.values() if text is None)
    print(
        f"\nrolling restart: {len(load.sent)} commands ({lost} lost on a closing socket), "
        f"{len(deploys)} deploys, cancelled by their stopping robot: {sorted(cancelled)}, "
        f"queued at the stops: {len(queued_at_a_stop)} + {len(queued_at_b_stop)}"
    )
    assert fresh_in_a | fresh_in_b <= set(cancelled), "what a stopped robot had just started is cancelled"
    # What was queued when a robot stopped was left to the others (unless the stopping robot
    # claimed it in that instant, and so cancelled it).
    for robot, queued in ((a, queued_at_a_stop), (b, queued_at_b_stop)):
        for deploy_id in queued - set(cancelled):
            assert deploys[deploy_id].state is DeployState.SUCCEEDED
            assert runs[deploy_id].robot_pid != robot.pid, f"#{deploy_id} ran in the stopped robot"


def test_a_terminal_deploy_is_untouched_while_robot_run_restarts(world: World) -> None:
    robot = world.start_robot()
    (world.checkout / "hold-1").touch()  # the terminal's deploy runs until the restart is done
    out = (world.tmp_path / "terminal.log").open("wb")
    terminal = subprocess.Popen(
        [PY, "-m", "bot.cli", "deploy", "acme/api", "--env", "production", "--config", str(world.config)],
        cwd=ROOT,
        env=robot_environ(),
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    world.terminals.append((terminal, out))
    wait_for(lambda: 1 in world.runs(), WAIT, "the terminal's step to start")
    owner = world.deploy(1).owner_id
    assert owner is not None
    terminal_process = world.store.get_process(owner)
    assert terminal_process is not None and terminal_process.pid == terminal.pid
    # Another deploy to that environment, through Slack: it waits behind the terminal's.
    world.github.push("acme/api", "later")
    envelope = world.slack.send_slash_command(
        command="/deploy", text="acme/api@later to production", user_id="U0ALICE01", channel_id="C0HERE"
    )
    wait_for(lambda: world.store.get_deploy(2) is not None, WAIT, "deploy #2 queued")

    world.sigterm(robot)
    assert world.deploy(1).state is DeployState.RUNNING and world.deploy(2).state is DeployState.QUEUED
    restarted = world.start_robot()
    wait_for(lambda: "deploy robot connected" in world.log(restarted), WAIT, "the restarted robot")
    time.sleep(2 * LEASE["lease"])  # several heartbeats and lease checks of the restarted robot
    assert world.deploy(1).state is DeployState.RUNNING and world.deploy(1).owner_id == owner
    assert world.deploy(2).state is DeployState.QUEUED
    (world.checkout / "hold-1").unlink()

    assert terminal.wait(timeout=WAIT) == 0, (world.tmp_path / "terminal.log").read_text()
    wait_for(lambda: world.deploy(2).state.is_final, WAIT, "deploy #2 to run after it")
    first, second = world.deploy(1), world.deploy(2)
    assert (first.state, first.owner_id, first.error) == (DeployState.SUCCEEDED, owner, None)
    assert second.state is DeployState.SUCCEEDED
    (deployment,) = [d for d in world.github.deployments("acme/api") if d.payload.get("robot_deploy_id") == 1]
    assert [s["body"]["state"] for s in deployment.statuses] == ["queued", "in_progress", "success"]
    runs = world.runs()
    assert sorted(runs) == [1, 2] and runs[1].robot_pid == terminal.pid
    assert runs[2].robot_pid == restarted.pid
    no_overlap(runs)
    assert "Deploy #2 queued" in reply(world.slack, envelope)
