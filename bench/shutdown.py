"""`robot run` SIGTERM → exit time: idle (baseline), with a step that ignores SIGTERM, and with
GitHub answering slowly (a deploy's final status and a command in flight both wait on it).

Each case runs `robot run` as a real process against the fake Slack and GitHub, with the
defaults of `deploys.kill_grace` (10 s) and `deploys.stop_timeout` (10 s); the figure is the
worst of the runs (target: ≤ stop_timeout + 1 s). Prints one table; bounded in count and time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.models import DeployState
    from bot.store import SqlStore
    from tests.fakes.github import FakeGitHub
    from tests.fakes.slack import FakeSlack

ROOT = Path(__file__).resolve().parent.parent

STOP_TIMEOUT = 10.0  # the default of deploys.stop_timeout
TARGET = STOP_TIMEOUT + 1.0
GITHUB_DELAY = 30.0
KILL_AFTER = 40.0  # a robot that is not gone by then is killed and counted as such


@dataclass(frozen=True)
class Result:
    """One SIGTERM: how long until the exit, and what it left behind."""

    seconds: float
    state: str  # deploy #1 in the store once the robot is gone ("" when there is none)
    step_left: bool  # its step still running after the robot exited


def _case(folder: Path, prepare: Callable[[FakeGitHub, FakeSlack, Path, Path], None] | None) -> Result:
    """Start `robot run`; ``prepare`` brings it to the state under test; SIGTERM, and the result."""
    from tests.fakes.github import FakeGitHub
    from tests.fakes.slack import FakeSlack
    from tests.support.harness import TOKEN, make_git_repo, write_config
    from tests.support.rig import CHANNEL, PY, WAIT, robot_environ, slack_section, step_command

    folder.mkdir(parents=True)
    with FakeGitHub(tokens={TOKEN: "deploy-robot"}) as github, FakeSlack() as slack:
        github.add_repo("acme/api")
        checkout = make_git_repo(folder / "checkout")
        (checkout / "hold").touch()
        envs = {"production": {"folder": str(checkout), "commands": [step_command(checkout, ignore_term=1)]}}
        config = write_config(
            folder,
            github.url,
            {"acme/api": {"channel": CHANNEL, "environments": envs}},
            slack=slack_section(slack),
            deploys={"workers": 4, "ci_poll_interval": 0.2},  # kill_grace, stop_timeout: defaults
        )
        with (folder / "robot.log").open("wb") as log:
            proc = subprocess.Popen(
                [PY, "-m", "bot.cli", "run", "--config", str(config)],
                cwd=ROOT,
                env=robot_environ(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            slack.wait_connected(timeout=WAIT)
            if prepare is not None:
                prepare(github, slack, checkout, folder / "robot.db")
            began = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=KILL_AFTER)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            took = time.monotonic() - began
            if proc.returncode not in (0, -signal.SIGKILL):
                tail = (folder / "robot.log").read_text()[-800:]
                raise SystemExit(f"robot run exited {proc.returncode}: {tail}")
            return Result(took, _left_state(folder / "robot.db"), _step_alive(checkout))
        finally:
            with contextlib.suppress(OSError):
                proc.kill()
            with contextlib.suppress(OSError, ValueError):
                os.killpg(int((checkout / "step-1.pid").read_text()), signal.SIGKILL)


def _left_state(database: Path) -> str:
    from bot.store import SqlStore

    store = SqlStore.from_url(f"sqlite:///{database}")
    try:
        deploy = store.get_deploy(1)
    finally:
        store.close()
    return deploy.state.value if deploy else ""


def _step_alive(checkout: Path) -> bool:
    pid_file = checkout / "step-1.pid"
    if not pid_file.exists():
        return False
    try:
        os.killpg(int(pid_file.read_text()), 0)
    except ProcessLookupError:
        return False
    return True


def _deploying(github: FakeGitHub, slack: FakeSlack, checkout: Path, database: Path) -> None:
    """Deploy #1 runs its step (which ignores SIGTERM)."""
    from bot.models import DeployState
    from bot.store import SqlStore
    from tests.support.rig import WAIT, slash
    from tests.support.wait import wait_for

    answer = slash(slack, "acme/api")
    assert "Deploy #1 queued" in answer, answer
    wait_for(lambda: (checkout / "step-1.pid").exists(), WAIT, "the step")
    store = SqlStore.from_url(f"sqlite:///{database}")
    try:
        wait_for(lambda: _state(store) is DeployState.RUNNING, WAIT, "deploy #1 running")
    finally:
        store.close()


def _state(store: SqlStore) -> DeployState | None:
    deploy = store.get_deploy(1)
    return deploy.state if deploy else None


def _deploying_with_slow_github(github: FakeGitHub, slack: FakeSlack, checkout: Path, database: Path) -> None:
    """As _deploying, then every GitHub answer takes 30 s and a new command waits on one."""
    from tests.support.rig import WAIT

    _deploying(github, slack, checkout, database)
    github.delay(GITHUB_DELAY)
    github.push("acme/api", "main")
    envelope = slack.send_slash_command(command="/deploy", text="acme/api", user_id="U0ALICE01")
    slack.wait_ack(envelope, timeout=WAIT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=2, help="runs per case (default: %(default)s)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from bench.lib.bootstrap import use_repo_venv

    use_repo_venv("github", "sqlalchemy", "slack_bolt")
    cases: dict[str, Callable[[FakeGitHub, FakeSlack, Path, Path], None] | None] = {
        "idle": None,
        "step ignoring SIGTERM": _deploying,
        f"+ GitHub answering in {GITHUB_DELAY:g} s": _deploying_with_slow_github,
    }
    results: dict[str, list[Result]] = {name: [] for name in cases}
    with tempfile.TemporaryDirectory(prefix="robot-shutdown-") as tmp:
        for run in range(max(1, args.runs)):
            for number, (name, prepare) in enumerate(cases.items()):
                results[name].append(_case(Path(tmp) / f"{run}-{number}", prepare))
    base = max(r.seconds for r in results.pop("idle"))
    print(f"worst of {args.runs} runs each; kill_grace 10 s, stop_timeout {STOP_TIMEOUT:g} s (defaults)")
    print("what | robot | baseline | ratio | target | met?")
    for name, runs in results.items():
        took = max(r.seconds for r in runs)
        met = "yes" if took <= TARGET else "NO"
        what = f"SIGTERM → exit, {name}"
        print(f"{what} | {took:.2f} s | {base:.2f} s idle | {took / base:.1f}× | ≤ {TARGET:g} s | {met}")
        states = sorted({r.state for r in runs})
        left = sum(r.step_left for r in runs)
        ok = states == ["cancelled"] and left == 0
        shown = f"{'/'.join(states)}, step left running in {left} of {len(runs)}"
        verdict = "yes" if ok else "NO"
        print(f"deploy #1 at exit ({name}) | {shown} | | | cancelled, no step left | {verdict}")


if __name__ == "__main__":
    main()
