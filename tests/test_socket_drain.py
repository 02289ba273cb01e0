"""A `robot run` stopped (SIGTERM) right after commands reached it still acks and answers them.

The real process against the fake Slack and GitHub: each command's listener waits on GitHub (a
delayed commit lookup) when the SIGTERM comes, so the socket may close only once they are acked.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest

from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.support.harness import make_git_repo, write_config
from tests.support.rig import (
    CHANNEL,
    PY,
    WAIT,
    reply,
    slack_section,
    start_robot_process,
    stop_robot_processes,
)

pytestmark = pytest.mark.slow  # a real robot process and the loopback fakes

API = "acme/api"
LOOKUP_SECONDS = 1.0  # each command's GitHub lookup: under the ack budget, over the time to SIGTERM
STOP_TIMEOUT = 6


def test_commands_in_flight_at_sigterm_are_acked_and_answered(
    tmp_path: Path, github: FakeGitHub, slack: FakeSlack
) -> None:
    github.add_repo(API)
    shas = [github.push(API, "main") for _ in range(3)]
    folder = make_git_repo(tmp_path / "checkout")
    step = {"folder": str(folder), "commands": [[PY, "-c", "pass"]]}
    envs = {env: step for env in ("staging", "production")}
    repos = {API: {"channel": CHANNEL, "environments": envs, "default_environment": "staging"}}
    deploys = {"stop_timeout": STOP_TIMEOUT, "kill_grace": 1}
    config = write_config(tmp_path, github.url, repos, slack=slack_section(slack), deploys=deploys)
    robot = start_robot_process(config, tmp_path / "robot.log")
    try:
        slack.wait_connected(timeout=WAIT, total=1)
        for sha in shas:
            github.delay(LOOKUP_SECONDS, path_contains=f"/commits/{sha}", count=1)
        envelopes = [
            slack.send_slash_command(
                command="/deploy", text=f"{API}@{sha} to production", user_id="U0ALICE01", channel_id="C0HERE"
            )
            for sha in shas
        ]
        time.sleep(LOOKUP_SECONDS / 3)  # each listener is waiting on GitHub now
        proc = robot[0]
        proc.send_signal(signal.SIGTERM)
        answers = [reply(slack, envelope) for envelope in envelopes]
        assert proc.wait(timeout=STOP_TIMEOUT + 5) == 0
    finally:
        stop_robot_processes([robot])
    for sha, answer in zip(shas, answers, strict=True):
        assert re.search(rf"Deploy #\d+ queued: {API}@{sha}", answer), answer
