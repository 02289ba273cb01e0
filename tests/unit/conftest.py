"""The unit tier's world: the real services wired to in-memory port fakes (no sockets, no processes)."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest

from bot.config import Settings, load_settings
from bot.deploys import DeployService
from bot.models import Deploy, Source
from bot.pipeline import Pipeline
from bot.redact import Redactor
from tests.fakes.memory import MemoryGitHub, MemoryStore, RecordingObserver, ScriptedRunner
from tests.support.harness import environ, slack_user, write_config
from tests.support.wait import wait_for

API = "acme/api"


@pytest.fixture(autouse=True)
def no_sockets_or_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The unit tier stays fast and hermetic: a connect or a child process is a test bug here."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the unit tier opens no sockets and starts no processes")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


@dataclass
class World:
    """One configured robot core on fakes; ``run`` plays a deploy on the calling thread."""

    settings: Settings
    store: MemoryStore
    github: MemoryGitHub
    runner: ScriptedRunner
    observer: RecordingObserver
    pipeline: Pipeline
    service: DeployService
    folder: Path
    threads: list[threading.Thread] = field(default_factory=list)

    def request(self, repo: str = API, **kwargs: Any) -> Deploy:
        """A new queued deploy (user U1 from a command unless told otherwise)."""
        kwargs.setdefault("user", "U1")
        if isinstance(kwargs["user"], str):
            kwargs["user"] = slack_user(kwargs["user"])
        kwargs.setdefault("source", Source.COMMAND)
        deploy, created = self.service.request(repo, **kwargs)
        assert created, f"deploy #{deploy.id} already existed"
        return deploy

    def run(self, deploy_id: int, cancel: threading.Event | None = None) -> Deploy:
        """Claim ``deploy_id`` and run it here to its final state."""
        return self.service.run_one(deploy_id, cancel or threading.Event(), poll=0.01)

    def run_in_background(self, deploy_id: int) -> threading.Thread:
        """Run a deploy on its own thread; the test joins it through ``wait_final``."""
        thread = threading.Thread(target=self.run, args=(deploy_id,), daemon=True)
        thread.start()
        self.threads.append(thread)
        return thread

    def wait_final(self, deploy_id: int, timeout: float = 5.0) -> Deploy:
        # GitHub hears the end after the store: wait until the service is done with the deploy.
        wait_for(
            lambda: (
                self.service.get(deploy_id).state.is_final and deploy_id not in self.service.running_here()
            ),
            timeout,
            f"deploy #{deploy_id}",
        )
        return self.service.get(deploy_id)


class WorldFactory(Protocol):
    def __call__(
        self,
        repos: dict[str, Any] | None = None,
        store: MemoryStore | None = None,
        github: MemoryGitHub | None = None,
        **sections: Any,
    ) -> World: ...


def commands_env(folder: Path, *commands: list[str], **extra: Any) -> dict[str, Any]:
    """One environment running ``commands`` (scripted: nothing is executed) in ``folder``."""
    return {"folder": str(folder), "commands": [list(c) for c in commands] or [["true"]], **extra}


@pytest.fixture
def world_for(tmp_path: Path) -> Iterator[WorldFactory]:
    """Build a World from a `repos:` mapping (default: acme/api, one production env, one step)."""
    folder = tmp_path / "checkout"
    folder.mkdir()
    made: list[World] = []

    def make(
        repos: dict[str, Any] | None = None,
        store: MemoryStore | None = None,
        github: MemoryGitHub | None = None,
        **sections: Any,
    ) -> World:
        """``store`` and ``github``: fakes of the test's own (say one that refuses a write)."""
        repos = repos or {API: {"environments": {"production": commands_env(folder)}}}
        sections.setdefault("deploys", {"workers": 2, "ci_poll_interval": 0.01, "kill_grace": 0})
        env = environ()
        settings = load_settings(write_config(tmp_path, "http://github.invalid", repos, **sections), env)
        store, github = store or MemoryStore(), github or MemoryGitHub()
        for repo in settings.repos:
            github.add_repo(repo, settings.repos[repo].branch)
        runner, observer = ScriptedRunner(), RecordingObserver()
        redactor = Redactor.for_environment(settings.secrets, env)
        pipeline = Pipeline(settings, github, store, runner, redactor, env)
        service = DeployService(settings, store, github, pipeline, observer, env)
        world = World(settings, store, github, runner, observer, pipeline, service, folder)
        made.append(world)
        return world

    yield make
    for world in made:
        world.service.stop(timeout=1)
        for thread in world.threads:
            thread.join(timeout=5)
        world.service.close()
