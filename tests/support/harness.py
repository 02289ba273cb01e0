"""Builders for end-to-end tests: real git repos, robot.yaml files, the environment, the CLI, the core."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from bot.config import Settings, load_settings
from bot.models import Actor, ActorKind, Deploy
from bot.wiring import Core, build_core
from tests.fakes.memory import RecordingObserver
from tests.support.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "ghp_test_token_0123456789"


def git(folder: Path, *args: str) -> str:
    """Run git in ``folder`` and return its stdout."""
    done = subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True, text=True, timeout=30)
    return done.stdout.strip()


def make_git_repo(folder: Path) -> Path:
    """A real git repo with one commit, standing in for a deploy checkout."""
    folder.mkdir(parents=True, exist_ok=True)
    git(folder, "init", "-q", "-b", "main")
    git(folder, "config", "user.email", "robot@example.com")
    git(folder, "config", "user.name", "robot")
    (folder / "VERSION").write_text("1\n")
    git(folder, "add", "VERSION")
    git(folder, "commit", "-q", "-m", "first")
    return folder


def write_config(tmp_path: Path, github_url: str, repos: Mapping[str, Any], **sections: Any) -> Path:
    """A robot.yaml pointing at the fake GitHub, with no client-side throttling."""
    config = {
        "github": {
            "token": "${GITHUB_TOKEN}",
            "api_url": github_url,
            "seconds_between_requests": 0,
            "seconds_between_writes": 0,
            "timeout": 5,
            "max_retries": 3,
            "poll_interval": 1,
        },
        "state": {"url": f"sqlite:///{tmp_path / 'robot.db'}"},
        "deploys": {"workers": 4, "ci_poll_interval": 0.2, "kill_grace": 1},
        "repos": dict(repos),
        **sections,
    }
    path = tmp_path / "robot.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def slack_user(user_id: str) -> Actor:
    """A Slack user as the deploy service knows them."""
    return Actor(ActorKind.SLACK, user_id)


def environ(**extra: str) -> dict[str, str]:
    """The robot's environment for tests: the real one plus the fake token."""
    return {**os.environ, "GITHUB_TOKEN": TOKEN, **extra}


def run_cli(
    config: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`robot` as a real process (python -m bot.cli), as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args, "--config", str(config)],
        cwd=ROOT,
        env=dict(env or environ()),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_core(config: Path, observer: RecordingObserver, env: Mapping[str, str] | None = None) -> Core:
    """Load robot.yaml and wire the real core against it."""
    settings: Settings = load_settings(config, env or environ())
    return build_core(settings, env or environ(), observer)


def wait_final(core: Core, deploy_id: int, timeout: float = 60) -> Deploy:
    """The deploy once it is final and its end recorded everywhere (GitHub follows the store)."""
    wait_for(
        lambda: core.service.get(deploy_id).state.is_final and deploy_id not in core.service.running_here(),
        timeout,
        f"deploy #{deploy_id}",
    )
    return core.service.get(deploy_id)
