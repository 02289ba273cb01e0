"""Typed values that flow through the robot: requests, deploys, locks, gate and step results."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class DeployState(StrEnum):
    """Where a deploy is in its life; the last five are final."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    BLOCKED = "blocked"
    INTERRUPTED = "interrupted"

    @property
    def is_final(self) -> bool:
        return self not in (DeployState.QUEUED, DeployState.RUNNING)

    @property
    def icon(self) -> str:
        """The state's emoji, the same in the terminal and in Slack."""
        return _STATE_ICONS[self]


_STATE_ICONS = {
    DeployState.QUEUED: "⏳",
    DeployState.RUNNING: "🚀",
    DeployState.SUCCEEDED: "✅",
    DeployState.FAILED: "❌",
    DeployState.CANCELLED: "⛔",
    DeployState.BLOCKED: "🚫",
    DeployState.INTERRUPTED: "⚠️",
}
ACTIVE_STATES = (DeployState.QUEUED, DeployState.RUNNING)
FINAL_STATES = tuple(state for state in DeployState if state.is_final)


class Source(StrEnum):
    """What asked for the deploy."""

    COMMAND = "command"
    BUTTON = "button"
    MERGE = "merge"
    CLI = "cli"


@dataclass(frozen=True)
class DeployRequest:
    """A validated request: the ref is already resolved to ``sha``."""

    repo: str
    env: str
    ref: str
    sha: str
    requested_by: str
    source: Source
    force: bool = False
    channel: str | None = None
    message_ts: str | None = None


@dataclass(frozen=True)
class Deploy:
    """One deploy as recorded in the store."""

    id: int
    repo: str
    env: str
    ref: str
    sha: str
    requested_by: str
    source: Source
    state: DeployState
    force: bool = False
    github_deployment_id: int | None = None
    channel: str | None = None
    message_ts: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    cancel_requested: bool = False

    @property
    def short_sha(self) -> str:
        return self.sha[:7]

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or datetime.now(self.started_at.tzinfo)
        return (end - self.started_at).total_seconds()


@dataclass(frozen=True)
class Lock:
    """A repo + environment that refuses deploys until unlocked."""

    repo: str
    env: str
    locked_by: str
    reason: str
    locked_at: datetime


@dataclass(frozen=True)
class BranchHead:
    """The last branch head the poller saw, with the ETag that makes the next poll cheap."""

    repo: str
    sha: str
    etag: str | None = None


class ContextState(StrEnum):
    """The state of one required CI context for a commit."""

    SUCCESS = "success"
    PENDING = "pending"
    FAILURE = "failure"
    MISSING = "missing"


@dataclass(frozen=True)
class ContextResult:
    """One required context as GitHub reports it (newest status or check run of that name)."""

    name: str
    state: ContextState
    url: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class GateResult:
    """The CI state of a commit for a set of required contexts."""

    contexts: tuple[ContextResult, ...] = ()

    @property
    def failing(self) -> tuple[ContextResult, ...]:
        return tuple(c for c in self.contexts if c.state is ContextState.FAILURE)

    @property
    def waiting(self) -> tuple[ContextResult, ...]:
        return tuple(c for c in self.contexts if c.state in (ContextState.PENDING, ContextState.MISSING))

    @property
    def green(self) -> bool:
        return all(c.state is ContextState.SUCCESS for c in self.contexts)


class StepStatus(StrEnum):
    """How a step ended."""

    OK = "ok"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class StepResult:
    """The outcome of one step; ``reason`` is short and human ("exited 1", "timed out after 600 s")."""

    status: StepStatus
    reason: str = ""
    exit_code: int | None = None
    tail: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.status is StepStatus.OK


class TaskStatus(StrEnum):
    """An Ansible task's state on one host."""

    STARTED = "started"
    OK = "ok"
    CHANGED = "changed"
    SKIPPED = "skipped"
    FAILED = "failed"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class TaskEvent:
    """One Ansible task event on one host (host is empty for a task start)."""

    task: str
    status: TaskStatus
    host: str = ""


@dataclass(frozen=True)
class CommandStep:
    """An argv list run without a shell; ``{sha}`` ``{ref}`` ``{env}`` ``{repo}`` are substituted."""

    argv: tuple[str, ...]

    @property
    def label(self) -> str:
        # One line, whatever the arguments hold (a multi-line `python -c` stays readable).
        return " ".join(self.argv).replace("\r", " ").replace("\n", " ⏎ ")


@dataclass(frozen=True)
class AnsibleStep:
    """A playbook run through ansible-runner; paths are relative to the step's folder."""

    playbook: str
    inventory: str | None = None
    extravars: tuple[tuple[str, object], ...] = ()

    @property
    def label(self) -> str:
        return f"ansible-playbook {self.playbook}"


Step = CommandStep | AnsibleStep
