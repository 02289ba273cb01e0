"""The bench's world: a fake GitHub on 127.0.0.1 with a green repo, configs, and the store."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from bot.store import SqlStore
from tests.fakes.github import FakeGitHub
from tests.support.harness import ROOT, TOKEN, environ, make_git_repo, write_config

REPO = "acme/api"
ENV = "production"
CONTEXTS = ("ci/test", "build")
# Set in this sandbox, not in a user's shell: they would recompile bot/ on every start and
# unbuffer stdout, so the robot processes run without them (their effect is measured apart).
NOT_A_USERS_SHELL = ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED")


class World:
    """A fake GitHub whose REPO head is green on both required contexts, plus a checkout."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.github = FakeGitHub(tokens={TOKEN: "deploy-robot"})
        self.sha = ""
        self.checkout = root / "checkout"

    def start(self) -> World:
        self.github.start()
        self.sha = self.github.add_repo(REPO)
        # One context of each kind, so the gate reads both statuses and check runs.
        self.github.set_status(REPO, self.sha, CONTEXTS[0], "success")
        self.github.set_check_run(REPO, self.sha, CONTEXTS[1], conclusion="success")
        make_git_repo(self.checkout)
        return self

    def stop(self) -> None:
        self.github.stop()

    def config(
        self, name: str, commands: Sequence[Sequence[str]], step_timeout: float, max_log_lines: int = 20_000
    ) -> Path:
        """A robot.yaml (in its own folder, with its own SQLite store) running ``commands``."""
        folder = self.root / name
        folder.mkdir(exist_ok=True)
        repos = {
            REPO: {
                "required_contexts": list(CONTEXTS),
                "environments": {
                    ENV: {
                        "folder": str(self.checkout),
                        "timeout": step_timeout,
                        "commands": [list(c) for c in commands],
                    }
                },
            }
        }
        deploys = {"workers": 4, "ci_poll_interval": 0.2, "kill_grace": 1, "max_log_lines": max_log_lines}
        return write_config(folder, self.github.url, repos, deploys=deploys)

    @property
    def env(self) -> dict[str, str]:
        """What a user's shell gives the robot: bytecode cached (in our temp dir), stdout buffered."""
        env = environ()
        for name in NOT_A_USERS_SHELL:
            env.pop(name, None)
        env["PYTHONPYCACHEPREFIX"] = str(self.root / "pycache")
        return env

    @property
    def shell_env(self) -> dict[str, str]:
        """This shell's environment as it is (for the what-if without a bytecode cache)."""
        return environ()

    @property
    def cwd(self) -> Path:
        return ROOT

    def robot_argv(self, config: Path) -> list[str]:
        """`robot deploy` as a user runs it, minus the console-script shim."""
        return [sys.executable, "-m", "bot.cli", "deploy", REPO, "--config", str(config)]

    def requests_so_far(self) -> int:
        return len(self.github.requests)


def latest_deploy_log(config: Path) -> tuple[str, str]:
    """(state, whole log text) of the newest deploy in the config's store."""
    store = SqlStore.from_url(f"sqlite:///{config.parent / 'robot.db'}")
    try:
        deploys = store.list_deploys(repo=REPO, limit=1)
        if not deploys:
            return "none", ""
        return deploys[0].state.value, store.read_log(deploys[0].id)
    finally:
        store.close()
