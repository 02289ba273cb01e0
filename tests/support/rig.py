"""The one robot rig: a whole `robot run` in-process (real Bolt, Socket Mode, WebClient, PyGithub,
SQLite) against the fake Slack and GitHub, with the helpers tests and benches drive it with."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from bot.app import Robot, build_robot
from bot.config import load_settings
from bot.models import Deploy, DeployState
from bot.ports import StorePort
from bot.slack.ids import CANCEL_ACTION
from bot.wiring import CoreStore
from tests.fakes.github import FakeDeployment, FakeGitHub
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, FakeSlack, Message
from tests.support.harness import ROOT, environ, write_config
from tests.support.wait import wait_for

PY = sys.executable
CHANNEL = "C0DEPLOYS"
WAIT = 30.0


# A deploy step as a real process. It records each run in runs.log (so a test can count runs),
# writes its pid to step-<id>.pid (its process group is its pid: steps run in their own session),
# prints `lines=N` lines, touches printed-<id>, waits while the file `hold` exists (at most
# `hold_max` s), prints `after=N` lines and records its end. `ignore_term=1` makes it log and
# ignore SIGTERM; `tick=S` prints a line every S s while it waits.
STEP_SCRIPT = """
import os, pathlib, signal, sys, time
args = dict(arg.split("=", 1) for arg in sys.argv[1:])
deploy = os.environ["DEPLOY_ID"]
def record(name, text):
    with open(name, "a") as handle:
        handle.write(text + "\\n")
if args.get("ignore_term"):
    signal.signal(signal.SIGTERM, lambda signum, frame: record("term.log", "TERM " + deploy))
record("runs.log", "start " + deploy)
pathlib.Path("step-" + deploy + ".pid").write_text(str(os.getpid()))
for i in range(int(args.get("lines", "0"))):
    print("line", i)
sys.stdout.flush()
pathlib.Path("printed-" + deploy).touch()
deadline = time.monotonic() + float(args.get("hold_max", "60"))
tick, ticks = float(args.get("tick", "0")), 0
while os.path.exists("hold") and time.monotonic() < deadline:
    time.sleep(tick or 0.05)
    if tick:
        print("tick", ticks, flush=True)
        ticks += 1
time.sleep(float(args.get("sleep", "0")))
for i in range(int(args.get("after", "0"))):
    print("after", i)
sys.stdout.flush()
record("runs.log", "end " + deploy)
"""


def step_command(folder: Path, **options: object) -> list[str]:
    """The argv of the recording step (STEP_SCRIPT written next to the folder) with options."""
    script = folder.parent / "step.py"
    script.write_text(STEP_SCRIPT)
    return [PY, str(script), *(f"{key}={value}" for key, value in options.items())]


def runs(folder: Path) -> list[str]:
    """What the recording step wrote to runs.log in folder: `start N` / `end N`, in order."""
    path = folder / "runs.log"
    return path.read_text().splitlines() if path.exists() else []


def slack_section(slack: FakeSlack, *, fast: bool = True, **overrides: Any) -> dict[str, Any]:
    """robot.yaml's `slack:` for the fake; ``fast``: quick pings and short pacing so tests stay quick.

    Benchmarks pass ``fast=False`` to measure the robot with its default pacing.
    """
    pacing = {"message_interval": 0.3, "channel_interval": 0.05, "update_interval": 0.02}
    quick = {"ping_interval": 0.5, **pacing} if fast else {}
    return {
        "bot_token": "${SLACK_BOT_TOKEN}",
        "app_token": "${SLACK_APP_TOKEN}",
        "channel": CHANNEL,
        "api_url": slack.api_url,
        **quick,
        **overrides,
    }


def robot_environ(**extra: str) -> dict[str, str]:
    """The robot's environment: the harness's plus the fake Slack tokens."""
    return environ(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_APP_TOKEN=APP_TOKEN, **extra)


RobotProcess = tuple["subprocess.Popen[bytes]", BinaryIO]
"""A `robot run` process and the log file it writes to."""


def start_robot_process(config: Path, log: Path) -> RobotProcess:
    """`robot run` on ``config`` as a real process, its output appended to ``log`` (a pipe could fill)."""
    out = log.open("ab")
    proc = subprocess.Popen(
        [PY, "-m", "bot.cli", "run", "--config", str(config)],
        cwd=ROOT,
        env=robot_environ(),
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    return proc, out


def stop_robot_processes(procs: Iterable[RobotProcess]) -> None:
    """SIGTERM each live one (SIGKILL past its 15 s), then close the logs."""
    for proc, out in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        out.close()


def db_url(tmp_path: Path) -> str:
    """The state.url write_config gives a test."""
    return f"sqlite:///{tmp_path / 'robot.db'}"


def root_text(slack: FakeSlack, deploy: Deploy) -> str:
    """The deploy's root message blocks as one searchable string ("" while it is not posted)."""
    if not deploy.message_ts:
        return ""
    try:
        message = slack.message(deploy.channel or CHANNEL, deploy.message_ts)
    except KeyError:
        return ""
    return json.dumps(message.blocks, ensure_ascii=False)


def deployment_of(github: FakeGitHub, deploy: Deploy) -> FakeDeployment | None:
    """The one GitHub Deployment recorded for a deploy (asserts there is at most one)."""
    found = [
        d
        for d in github.deployments(deploy.repo)
        if isinstance(d.payload, dict) and d.payload.get("robot_deploy_id") == deploy.id
    ]
    assert len(found) <= 1, f"deploy #{deploy.id} created {len(found)} GitHub deployments"
    return found[0] if found else None


def github_state(github: FakeGitHub, deploy: Deploy) -> str | None:
    """The newest deployment status GitHub holds for a deploy (None: no deployment or no status)."""
    deployment = deployment_of(github, deploy)
    if deployment is None or not deployment.statuses:
        return None
    return str(deployment.statuses[-1]["body"]["state"])


def wait_agree(
    store: StorePort,
    github: FakeGitHub,
    slack: FakeSlack,
    deploy_id: int,
    state: DeployState,
    gh_state: str | None,
    timeout: float = WAIT,
) -> Deploy:
    """Wait until store, GitHub and the Slack root all say the same final state; return the deploy.

    The store must be ``state`` (and no longer note a GitHub status as pending), GitHub's newest
    deployment status ``gh_state`` (None: no deployment at all), and the root message must show
    ``<icon> <state>`` without a Cancel button.
    """

    def current() -> Deploy:
        deploy = store.get_deploy(deploy_id)
        assert deploy is not None, f"no deploy #{deploy_id}"
        return deploy

    def agree() -> bool:
        deploy = current()
        root = root_text(slack, deploy)
        return (
            deploy.state is state
            and "GitHub status pending" not in (deploy.error or "")
            and github_state(github, deploy) == gh_state
            and f"{state.icon} {state.value}" in root
            and CANCEL_ACTION not in root
        )

    try:
        wait_for(agree, timeout, f"store, GitHub and Slack to agree on #{deploy_id} {state.value}")
    except AssertionError:
        deploy = current()
        raise AssertionError(
            f"#{deploy_id}: store {deploy.state.value} ({deploy.error}), "
            f"GitHub {github_state(github, deploy)}, Slack root {root_text(slack, deploy)[:300]}"
        ) from None
    deploy = current()
    if gh_state is None:
        assert deployment_of(github, deploy) is None
    return deploy


def reply(slack: FakeSlack, envelope: str) -> str:
    """The answer to a slash command: its ack, or the later response after "⏳ Working on it…"."""
    ack = slack.wait_ack(envelope, timeout=WAIT)
    text = str((ack.payload or {}).get("text", ""))
    if text.startswith("⏳"):
        text = str(slack.wait_response(envelope, timeout=WAIT).get("text", ""))
    return text


def slash(slack: FakeSlack, text: str, user: str = "U0ALICE01") -> str:
    """Send `/deploy text` over the socket and return the answer."""
    envelope = slack.send_slash_command(command="/deploy", text=text, user_id=user, channel_id="C0HERE")
    return reply(slack, envelope)


class RobotRig:
    """One robot built by build_robot and started, plus the fakes it talks to."""

    def __init__(
        self,
        tmp_path: Path,
        github: FakeGitHub,
        slack: FakeSlack,
        repos: Mapping[str, Any],
        *,
        store: CoreStore | None = None,
        env: Mapping[str, str] | None = None,
        checkout: Path | None = None,
        github_settings: Mapping[str, Any] | None = None,
        slack_settings: Mapping[str, Any] | None = None,
        **sections: Any,
    ) -> None:
        self.github = github
        self.slack = slack
        self.checkout = checkout
        sections["slack"] = slack_section(slack, **(slack_settings or {}))
        if github_settings:
            sections["github"] = {
                "token": "${GITHUB_TOKEN}",
                "api_url": github.url,
                "seconds_between_requests": 0,
                "seconds_between_writes": 0,
                "timeout": 5,
                "max_retries": 3,
                "poll_interval": 1,
                **github_settings,
            }
        self.config = write_config(tmp_path, github.url, repos, **sections)
        full_env = robot_environ(**(env or {}))
        self.robot: Robot = build_robot(load_settings(self.config, full_env), full_env, store=store)
        self.store = self.robot.core.store
        self.robot.start()
        try:
            slack.wait_connected(timeout=WAIT)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self.robot.handler.client.auto_reconnect_enabled = False
        self.slack.close_all()
        self.robot.stop()

    def __enter__(self) -> RobotRig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- Slack side ---------------------------------------------------------------------

    def send_command(self, text: str, user: str = "U0ALICE01") -> str:
        """Send `/deploy text` over the socket; returns the envelope id."""
        return self.slack.send_slash_command(command="/deploy", text=text, user_id=user, channel_id="C0HERE")

    def reply(self, envelope: str) -> str:
        return reply(self.slack, envelope)

    def command(self, text: str, user: str = "U0ALICE01", command: str = "/deploy") -> str:
        """Send a slash command; the text of its ephemeral ack (or of the later response)."""
        if command == "/deploy":
            return self.reply(self.send_command(text, user))
        envelope = self.slack.send_slash_command(
            command=command, text=text, user_id=user, channel_id="C0HERE"
        )
        return self.reply(envelope)

    def send_click(self, action_id: str, value: str, user: str, message_ts: str | None = None) -> str:
        return self.slack.send_block_action(
            action_id, value, user_id=user, channel_id=CHANNEL, message_ts=message_ts
        )

    def click_reply(self, envelope: str) -> str:
        """Buttons are acked empty; the answer is the ephemeral response that follows."""
        self.slack.wait_ack(envelope, timeout=WAIT)
        return str(self.slack.wait_response(envelope, timeout=WAIT).get("text", ""))

    def click(
        self, action_id: str, value: str, user: str = "U0ALICE01", message_ts: str | None = None
    ) -> str:
        """Click a button in the robot's channel; the ephemeral answer."""
        return self.click_reply(self.send_click(action_id, value, user, message_ts))

    # --- store side ---------------------------------------------------------------------

    def deploy(self, deploy_id: int) -> Deploy:
        found = self.store.get_deploy(deploy_id)
        assert found is not None, f"no deploy #{deploy_id}"
        return found

    def wait_state(self, deploy_id: int, state: DeployState, timeout: float = WAIT) -> Deploy:
        wait_for(lambda: self.deploy(deploy_id).state is state, timeout, f"#{deploy_id} {state.value}")
        return self.deploy(deploy_id)

    def final(self, deploy_id: int, timeout: float = WAIT) -> Deploy:
        """The deploy once the store holds it in a final state and the robot recorded its end."""
        wait_for(lambda: self._is_final(deploy_id), timeout, f"deploy #{deploy_id}")
        return self.deploy(deploy_id)

    def _is_final(self, deploy_id: int) -> bool:
        found = self.store.get_deploy(deploy_id)
        # GitHub and Slack hear the end after the store: the robot must be done with the deploy.
        running = self.robot.core.service.running_here()
        return found is not None and found.state.is_final and deploy_id not in running

    def root(self, deploy_id: int) -> Message:
        """The deploy's root message as the fake Slack holds it now."""
        deploy = self.deploy(deploy_id)
        assert deploy.message_ts, "root message not recorded"
        return self.slack.message(deploy.channel or CHANNEL, deploy.message_ts)

    def wait_root_text(self, deploy_id: int, needle: str, timeout: float = WAIT) -> Message:
        """The root message once its blocks show ``needle``."""
        wait_for(
            lambda: needle in root_text(self.slack, self.deploy(deploy_id)),
            timeout,
            f"root of #{deploy_id} to show {needle!r}",
        )
        return self.root(deploy_id)

    def thread(self, deploy_id: int) -> list[Message]:
        """The replies under the deploy's root message."""
        deploy = self.deploy(deploy_id)
        assert deploy.message_ts, "root message not recorded"
        return self.slack.thread(deploy.channel or CHANNEL, deploy.message_ts)

    def wait_root_posted(self, deploy_id: int) -> Message:
        wait_for(lambda: root_text(self.slack, self.deploy(deploy_id)) != "", WAIT, f"root of #{deploy_id}")
        deploy = self.deploy(deploy_id)
        assert deploy.message_ts is not None
        return self.slack.message(deploy.channel or CHANNEL, deploy.message_ts)

    def thread_text(self, deploy_id: int) -> str:
        deploy = self.deploy(deploy_id)
        if not deploy.message_ts:
            return ""
        replies = self.slack.thread(deploy.channel or CHANNEL, deploy.message_ts)
        return json.dumps([m.blocks for m in replies], ensure_ascii=False)

    def agree(
        self, deploy_id: int, state: DeployState, gh_state: str | None, timeout: float = WAIT
    ) -> Deploy:
        return wait_agree(self.store, self.github, self.slack, deploy_id, state, gh_state, timeout)
