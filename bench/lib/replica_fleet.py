"""The replicas bench's world: 3 `robot run` on one PostgreSQL, the fakes, a recording step, merges.

Slack spreads envelopes over an app's connections; the fake sends each to its newest one, so
``RoutingSlack`` (a ``SpreadingSlack``) picks a live connection at random instead; the fleet
remembers whose connection is whose.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from bench.lib.poll_world import StampedGitHub
from tests.fakes.slack import FakeSlack, SpreadingSlack
from tests.support.harness import ROOT, TOKEN, make_git_repo, write_config
from tests.support.rig import CHANNEL, robot_environ, slack_section

REPOS = tuple(f"acme/svc{i}" for i in range(5))
ENVS = ("staging", "production")
AUTO_DEPLOYED = REPOS[:2]  # on_merge: deploy to staging; the others only announce
HEARTBEAT = 0.5
LEASE = 3.0
POLL_INTERVAL = 1.0  # write_config's github.poll_interval
LEADS = "merge polling: this robot polls now"
POLLING = "merge polling: "
STOP_GRACE = 15.0
# 60 deploys in ~45 s make ~7 writes/s in one channel (new messages alone over Slack's one a
# second per channel): `--default-pacing` measures the robot within Slack's limits; the tests'
# pacing keeps Slack out of the figures. ping_interval stays at 10 s.
SLACK_PACING = {"message_interval": 0.3, "channel_interval": 0.05, "update_interval": 0.02}

# Appends `start|end <deploy id> <repo>:<env> <unix time> <robot pid>` to the file in argv[1];
# sleeps 0.3-1.0 s, spread by deploy id. Small appends to an O_APPEND file do not interleave.
STEP_SCRIPT = """
import os, sys, time
began = time.time()
deploy, where = os.environ["DEPLOY_ID"], os.environ["DEPLOY_REPO"] + ":" + os.environ["DEPLOY_ENV"]
def record(kind, at):
    with open(sys.argv[1], "a") as out:
        out.write(f"{kind} {deploy} {where} {at:.6f} {os.getppid()}\\n")
record("start", began)
time.sleep(0.3 + (int(deploy) * 37 % 71) / 100)
record("end", time.time())
"""


def step_seconds(deploy: int) -> float:
    """How long STEP_SCRIPT sleeps for this deploy."""
    return 0.3 + (deploy * 37 % 71) / 100


class RoutingSlack(SpreadingSlack):
    """The fake Slack, sending each envelope to a live connection picked at random (seeded)."""

    def newest_connection(self) -> int:
        """The id of the connection accepted last."""
        with self._lock:
            return max(self._connections, default=0)


@dataclass
class Replica:
    """One `robot run` process, its log, and its Socket Mode connection id in the fake."""

    index: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    log: BinaryIO
    connection: int = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def leads(self) -> bool:
        """Alive, and the last thing it said about merge polling is that it polls."""
        said = [line for line in self.text().splitlines() if POLLING in line]
        return self.alive and bool(said) and LEADS in said[-1]


@dataclass
class Fleet:
    """The replicas on one robot.yaml; started one at a time so each connection is known."""

    config: Path
    folder: Path
    slack: RoutingSlack
    replicas: list[Replica] = field(default_factory=list)

    def start(self, timeout: float) -> Replica:
        index = len(self.replicas)
        before = self.slack.connection_ids()
        log_path = self.folder / f"robot-{index}.log"
        log = log_path.open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "run", "--config", str(self.config)],
            cwd=ROOT,
            env=robot_environ(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        replica = Replica(index, proc, log_path, log)
        self.replicas.append(replica)
        deadline = time.monotonic() + timeout
        while not (self.slack.connection_ids() - before):
            if time.monotonic() > deadline or not replica.alive:
                raise RuntimeError(f"robot {index} did not connect: {replica.text()[-1500:]}")
            time.sleep(0.05)
        replica.connection = max(self.slack.connection_ids() - before)
        return replica

    def live(self) -> list[Replica]:
        return [r for r in self.replicas if r.alive]

    def by_connection(self, connection: int) -> Replica | None:
        return next((r for r in self.replicas if r.connection == connection), None)

    def by_pid(self, pid: int) -> Replica | None:
        return next((r for r in self.replicas if r.pid == pid), None)

    def leader(self) -> Replica | None:
        leading = [r for r in self.replicas if r.leads()]
        return leading[0] if len(leading) == 1 else None

    def kill(self, replica: Replica) -> tuple[float, float]:
        """SIGKILL the robot alone (its steps live in their own sessions): when sent, when reaped."""
        killed_at = time.monotonic()
        replica.proc.send_signal(signal.SIGKILL)
        replica.proc.wait(timeout=10)
        return killed_at, time.monotonic()

    def stop_all(self) -> None:
        """SIGTERM every live robot at once, then SIGKILL what is left after the grace."""
        for replica in self.live():
            with contextlib.suppress(ProcessLookupError):
                replica.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for replica in self.replicas:
            try:
                replica.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                replica.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    replica.proc.wait(timeout=5)
            replica.log.close()


class Merges:
    """Merges into main on the fake GitHub, each with its pull request (distinct titles)."""

    def __init__(self, github: StampedGitHub) -> None:
        self.github = github
        self.titles: list[str] = []

    def merge(self, repo: str) -> str:
        number = len(self.titles) + 1
        title = f"Merged change m{number:02d}z"
        sha = self.github.push(repo, f"pr-{number}", message=f"Merge pull request #{number}\n\n{title}")
        self.github.add_pull_for_commit(repo, sha, number, title, user="alice", merged_by="bob")
        self.github.push(repo, "main", sha=sha)
        self.titles.append(title)
        return title


def announcements(slack: FakeSlack, titles: list[str]) -> dict[str, int]:
    """Top-level channel messages naming each pull request title."""
    top = [m for m in slack.messages(CHANNEL) if m.thread_ts in (None, m.ts)]
    texts = [json.dumps(m.blocks, ensure_ascii=False) + m.text for m in top]
    return {title: sum(1 for t in texts if title in t) for title in titles}


def write_world(
    folder: Path,
    github: StampedGitHub,
    slack: FakeSlack,
    store_url: str,
    *,
    default_pacing: bool = False,
    github_writes: float | None = None,
) -> tuple[Path, Path]:
    """The repos on the fake GitHub, a checkout, the step, robot.yaml; returns (config, runs file).

    ``default_pacing``: Slack writes and the GitHub client paced as shipped (the harness turns
    GitHub's client pacing off); ``github_writes`` sets github.seconds_between_writes (a what-if).
    """
    checkout = make_git_repo(folder / "checkout")
    script = folder / "step.py"
    script.write_text(STEP_SCRIPT)
    runs = folder / "runs.log"
    runs.touch()
    step = {"folder": str(checkout), "commands": [[sys.executable, "-I", "-S", str(script), str(runs)]]}
    repos: dict[str, Mapping[str, Any]] = {}
    for repo in REPOS:
        github.add_repo(repo)
        on_merge = {"on_merge": "deploy", "auto_deploy": "staging"} if repo in AUTO_DEPLOYED else {}
        repos[repo] = {"channel": CHANNEL, "environments": dict.fromkeys(ENVS, step), **on_merge}
    config = write_config(
        folder,
        github.url,
        repos,
        slack=slack_section(slack, fast=False, **({} if default_pacing else SLACK_PACING)),
        state={"url": store_url, "heartbeat": HEARTBEAT, "lease": LEASE},
    )
    if default_pacing or github_writes is not None:
        data = yaml.safe_load(config.read_text())
        if default_pacing:
            for key in ("seconds_between_requests", "seconds_between_writes"):
                data["github"].pop(key, None)
        if github_writes is not None:
            data["github"]["seconds_between_writes"] = github_writes
        config.write_text(yaml.safe_dump(data, sort_keys=False))
    return config, runs


def cpu_seconds(pid: int) -> float:
    """CPU time of a process's live threads in ns precision (/proc/PID/task/*/schedstat).

    psutil's user + system ticks are 10 ms: too coarse for an idle app over 10 s. A thread that
    ends inside the window takes its time with it; idle apps keep theirs.
    """
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def new_github() -> StampedGitHub:
    return StampedGitHub(tokens={TOKEN: "deploy-robot"})
