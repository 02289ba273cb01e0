"""Helpers for the step-runner tests: a recording StepContext, real git repos, process checks."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bot.models import TaskEvent
from bot.ports import StepContext
from tests.support.wait import wait_for

ROBOT_TOKEN = "xoxb-robot-secret-token"


@dataclass
class Recorder:
    """Collects what a runner reports; callbacks may come from another thread."""

    lines: list[str] = field(default_factory=list)
    tasks: list[TaskEvent] = field(default_factory=list)
    on_line: Callable[[str], None] | None = None
    on_event: Callable[[TaskEvent], None] | None = None

    def output(self, line: str) -> None:
        self.lines.append(line)
        if self.on_line is not None:
            self.on_line(line)

    def task(self, event: TaskEvent) -> None:
        self.tasks.append(event)
        if self.on_event is not None:
            self.on_event(event)


def deploy_vars(sha: str = "0123456789abcdef0123456789abcdef01234567") -> dict[str, str]:
    """DEPLOY_* values as the pipeline would pass them."""
    return {
        "DEPLOY_ID": "42",
        "DEPLOY_REPO": "acme/api",
        "DEPLOY_REF": "main",
        "DEPLOY_SHA": sha,
        "DEPLOY_ENV": "production",
        "DEPLOY_USER": "U012ABCDEF",
        "DEPLOY_PREVIOUS_SHA": "",
    }


def step_env(dvars: Mapping[str, str], **extra: str) -> dict[str, str]:
    """A complete step environment: a few inherited basics, DEPLOY_*, the env map; no tokens."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    env.update(dvars)
    env.update(extra)
    return env


def make_ctx(
    folder: Path,
    *,
    dvars: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    kill_grace: float = 1.0,
    cancel: threading.Event | None = None,
) -> tuple[StepContext, Recorder]:
    """A StepContext whose callbacks record into the returned Recorder."""
    values = dict(dvars) if dvars is not None else deploy_vars()
    recorder = Recorder()
    ctx = StepContext(
        folder=folder,
        env=dict(env) if env is not None else step_env(values),
        deploy_vars=values,
        timeout=timeout,
        cancel=cancel or threading.Event(),
        on_output=recorder.output,
        on_task=recorder.task,
        kill_grace=kill_grace,
    )
    return ctx, recorder


def git_repo(path: Path) -> str:
    """A real git repo with one commit at path; returns the commit SHA."""
    path.mkdir(parents=True, exist_ok=True)

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
            cwd=path,
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )
        return done.stdout.strip()

    git("init", "-q", "-b", "main")
    (path / "README.md").write_text("hello\n")
    git("add", "README.md")
    git("commit", "-q", "-m", "first")
    return git("rev-parse", "HEAD")


def pid_gone(pid: int) -> bool:
    """True when the process no longer runs (a zombie waiting for its reaper counts as gone)."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def read_pids(path: Path, count: int, timeout: float = 10.0) -> list[int]:
    """The pids a test child wrote to path, one per line, once count of them are there."""

    def ready() -> bool:
        return path.exists() and len(path.read_text().split()) >= count

    assert wait_for(ready, timeout), f"{path} never held {count} pids"
    return [int(p) for p in path.read_text().split()]


def processes_with_arg(marker: str) -> list[psutil.Process]:
    """Live processes whose command line contains marker (to find a playbook's grandchild)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info.get("cmdline") or []
        if marker in cmdline and proc.info.get("status") != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found
