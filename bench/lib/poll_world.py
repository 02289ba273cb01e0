"""The poll bench's world: a fake GitHub with many repos, their robot.yaml, and merges on demand."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from tests.fakes.github import FakeGitHub
from tests.support.harness import TOKEN, make_git_repo, write_config

CONTEXT = "ci/test"
CHANNEL = "C0DEPLOYS"


class Stamp(NamedTuple):
    """One request the fake answered, with when its answer was ready (monotonic seconds)."""

    at: float
    method: str
    path: str
    status: int


class StampedGitHub(FakeGitHub):
    """The fake GitHub, also keeping when each request was answered (the fake's own log has no times)."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        super().__init__(tokens=tokens)
        self._stamps: list[Stamp] = []
        self._stamps_lock = threading.Lock()

    def handle(self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes) -> Any:
        answer = super().handle(method, raw_path, headers, body)
        with self._stamps_lock:
            self._stamps.append(Stamp(time.monotonic(), method, raw_path.split("?", 1)[0], answer.status))
        return answer

    def stamps_since(self, since: float) -> list[Stamp]:
        """Requests answered at or after ``since``, oldest first."""
        with self._stamps_lock:
            return [s for s in self._stamps if s.at >= since]


class PollWorld:
    """``count`` repos on a fake GitHub on 127.0.0.1, each with a green head and a required context."""

    def __init__(self, root: Path, count: int) -> None:
        self.root = root
        self.repos = [f"bench/repo-{i:03d}" for i in range(count)]
        self.github = StampedGitHub(tokens={TOKEN: "deploy-robot"})
        self.checkout = root / "checkout"
        self._pull_numbers = iter(range(1, 1_000_000))

    def start(self) -> PollWorld:
        self.github.start()
        for repo in self.repos:
            sha = self.github.add_repo(repo)
            self.github.set_status(repo, sha, CONTEXT, "success")
        make_git_repo(self.checkout)
        return self

    def stop(self) -> None:
        self.github.stop()

    def config(
        self, name: str, poll_interval: float, github: Mapping[str, Any] | None = None, **sections: Any
    ) -> Path:
        """A robot.yaml in its own folder (own SQLite store) with GitHub's client pacing at its defaults.

        The harness config turns client throttling off; the bench keeps the shipped defaults
        (0.25 s between requests, 1 s between writes) because they are part of a poll's wall time;
        ``github`` overrides keys of that section (a what-if).
        """
        folder = self.root / name
        folder.mkdir(exist_ok=True)
        step = {"folder": str(self.checkout), "commands": [[sys.executable, "-c", "pass"]]}
        repo: Mapping[str, Any] = {
            "channel": CHANNEL,
            "required_contexts": [CONTEXT],
            "environments": {"staging": step, "production": step},
        }
        section = {
            "token": "${GITHUB_TOKEN}",
            "api_url": self.github.url,
            "poll_interval": poll_interval,
            **(github or {}),
        }
        repos = dict.fromkeys(self.repos, repo)
        return write_config(folder, self.github.url, repos, github=section, **sections)

    def merge(self, repo: str) -> tuple[str, float]:
        """Merge a pull request into main (fast-forward); returns its SHA and when main moved (monotonic).

        The commit and its pull request exist before main points at it, so a poll can never see
        the new head without its pull request.
        """
        number = next(self._pull_numbers)
        title = f"Change {number}"
        sha = self.github.push(repo, f"pr-{number}", message=f"Merge pull request #{number}\n\n{title}")
        self.github.add_pull_for_commit(repo, sha, number, title, user="alice", merged_by="bob")
        self.github.set_status(repo, sha, CONTEXT, "success")
        moved = time.monotonic()
        self.github.push(repo, "main", sha=sha)
        return sha, moved
