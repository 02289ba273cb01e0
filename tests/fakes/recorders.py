"""RecordingObserver and RecordingAnnouncer: what the services told them, kept for assertions."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from bot.models import (
    AnnouncementRef,
    Deploy,
    DeployState,
    GateResult,
    MergeNews,
    StepResult,
    TaskEvent,
)


class RecordingObserver:
    """A DeployObserver that remembers everything, for assertions."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, Any]] = []
        self.lines: dict[int, list[str]] = {}
        self._lock = threading.Lock()

    def _add(self, kind: str, deploy: Deploy, detail: Any) -> None:
        with self._lock:
            self.events.append((kind, deploy.id, detail))

    def deploy_changed(self, deploy: Deploy) -> None:
        self._add("state", deploy, deploy.state)

    def gate_waiting(self, deploy: Deploy, gate: GateResult) -> None:
        self._add("gate", deploy, tuple(c.name for c in gate.waiting))

    def step_started(self, deploy: Deploy, index: int, total: int, label: str) -> None:
        self._add("step", deploy, (index, total, label))

    def step_output(self, deploy: Deploy, line: str) -> None:
        with self._lock:
            self.lines.setdefault(deploy.id, []).append(line)

    def task_event(self, deploy: Deploy, event: TaskEvent) -> None:
        self._add("task", deploy, event)

    def step_finished(self, deploy: Deploy, index: int, result: StepResult) -> None:
        self._add("step_done", deploy, (index, result))

    def log_url(self, deploy: Deploy) -> str | None:
        return f"https://example.test/deploys/{deploy.id}"

    def states(self, deploy_id: int) -> list[DeployState]:
        with self._lock:
            return [d for k, i, d in self.events if k == "state" and i == deploy_id]

    def of_kind(self, kind: str, deploy_id: int) -> list[Any]:
        with self._lock:
            return [d for k, i, d in self.events if k == kind and i == deploy_id]


class RecordingAnnouncer:
    """A MergeAnnouncer that keeps what it was asked to post; ``fail_next`` makes posts raise."""

    def __init__(self, channel: str = "C0DEPLOYS") -> None:
        self.channel = channel
        self.news: list[MergeNews] = []
        self.problems: list[tuple[str, str, AnnouncementRef | None]] = []
        self.fail_next = 0
        self._lock = threading.Lock()

    def announce(
        self, news: MergeNews, posted: Callable[[AnnouncementRef], None] | None = None
    ) -> AnnouncementRef | None:
        with self._lock:
            if self.fail_next:
                self.fail_next -= 1
                raise ConnectionError("slack is down")
            self.news.append(news)
            where = AnnouncementRef(self.channel, f"1700000000.{len(self.news):06d}")
        if posted is not None:
            posted(where)
        return where

    def announce_problem(self, repo: str, text: str, thread: AnnouncementRef | None = None) -> None:
        with self._lock:
            self.problems.append((repo, text, thread))

    def about(self, repo: str) -> list[MergeNews]:
        return [n for n in self.news if n.repo == repo]
