"""A Slack app under test as its own process, connected to its own fake Slack in the bench process.

The robot's robot.yaml and environment come from the one rig (tests/support/rig.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from bench.lib.world import NOT_A_USERS_SHELL
from tests.fakes.slack import FakeSlack
from tests.support.harness import ROOT, write_config
from tests.support.rig import robot_environ, slack_section

BARE_APP = Path(__file__).resolve().parent / "bare_app.py"
# SIGTERM first: `robot run` cancels its deploys and flushes Slack within 10 s (DESIGN §6).
STOP_GRACE_SECONDS = 12.0
KILL_WAIT_SECONDS = 3.0


def process_env(pycache: Path) -> dict[str, str]:
    """A user's shell for the app processes: the fake tokens, a bytecode cache, buffered stdout."""
    env = robot_environ()
    for name in NOT_A_USERS_SHELL:
        env.pop(name, None)
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def robot_config(
    folder: Path,
    github_url: str,
    slack: FakeSlack,
    repos: Mapping[str, Any],
    *,
    workers: int,
    ping_interval: float,
    metrics_port: int | None = None,
) -> Path:
    """A robot.yaml for `robot run` against both fakes, with Slack pacing left at its defaults.

    ``metrics_port``: serve /metrics there (on 127.0.0.1); None leaves metrics off.
    """
    folder.mkdir(parents=True, exist_ok=True)
    sections: dict[str, Any] = {}
    if metrics_port is not None:
        sections["metrics"] = {"host": "127.0.0.1", "port": metrics_port}
    return write_config(
        folder,
        github_url,
        repos,
        slack=slack_section(slack, fast=False, ping_interval=ping_interval),
        deploys={"workers": workers, "ci_poll_interval": 0.2, "kill_grace": 1},
        **sections,
    )


def robot_argv(config: Path) -> list[str]:
    """`robot run` as a user starts it, minus the console-script shim."""
    return [sys.executable, "-m", "bot.cli", "run", "--config", str(config)]


def bare_argv(slack: FakeSlack, ping_interval: float) -> list[str]:
    return [sys.executable, str(BARE_APP), slack.api_url, f"{ping_interval:g}"]


class AppProcess:
    """One app process (its own session) and the fake Slack it is connected to."""

    def __init__(self, name: str, slack: FakeSlack, argv: Sequence[str], env: Mapping[str, str], log: Path):
        self.name = name
        self.slack = slack
        self._argv = list(argv)
        self._env = dict(env)
        self._log_path = log
        self._proc: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None

    def start(self, connect_timeout: float) -> AppProcess:
        """Start the process and wait until its Socket Mode connection is up."""
        with self._log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                self._argv,
                cwd=ROOT,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self.slack.wait_connected(timeout=connect_timeout)
        except TimeoutError as exc:
            self.stop()
            raise RuntimeError(f"{self.name} did not connect: {self.log_tail()}") from exc
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL the process group if it is still there after the grace."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            self.exit_code = proc.returncode if proc else None
            return
        for sig, wait in ((signal.SIGTERM, STOP_GRACE_SECONDS), (signal.SIGKILL, KILL_WAIT_SECONDS)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                self.exit_code = proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def log_tail(self, chars: int = 1500) -> str:
        try:
            return self._log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def __enter__(self) -> AppProcess:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def leftover_pids(folder: Path) -> list[int]:
    """Processes still running with their working directory under ``folder`` (stray deploy steps)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if Path(os.readlink(entry / "cwd")).is_relative_to(folder):
                found.append(int(entry.name))
    return found


def kill_leftovers(folder: Path) -> list[int]:
    """SIGKILL stray deploy steps by pid (they descend from the app processes this bench started)."""
    pids = leftover_pids(folder)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return pids
