"""Typed values that flow through the robot: deploys, locks, CI gate, steps, GitHub reads, merge news."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class DeployState(StrEnum):
    """Where a deploy is in its life; the first four are active, the rest final.

    ``waiting``: the head of its repo + environment queue, claimed, its CI gate pending; no
    worker holds it (a scheduled re-check moves it on).
    ``awaiting_approval``: its environment wants approvals first; it neither holds the queue nor
    a worker (enough approvals queue it; a rejection or its timeout ends it rejected / expired).
    """

    AWAITING_APPROVAL = "awaiting_approval"
    QUEUED = "queued"
    WAITING = "waiting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    BLOCKED = "blocked"
    INTERRUPTED = "interrupted"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def is_final(self) -> bool:
        return self not in ACTIVE_STATES

    @property
    def icon(self) -> str:
        """The state's emoji, the same in the terminal and in Slack."""
        return _STATE_ICONS[self]


_STATE_ICONS = {
    DeployState.AWAITING_APPROVAL: "✋",
    DeployState.QUEUED: "⏳",
    DeployState.WAITING: "⏸️",
    DeployState.RUNNING: "🚀",
    DeployState.SUCCEEDED: "✅",
    DeployState.FAILED: "❌",
    DeployState.CANCELLED: "⛔",
    DeployState.BLOCKED: "🚫",
    DeployState.INTERRUPTED: "⚠️",
    DeployState.REJECTED: "🙅",
    DeployState.EXPIRED: "⌛",
}
ACTIVE_STATES = (DeployState.AWAITING_APPROVAL, DeployState.QUEUED, DeployState.WAITING, DeployState.RUNNING)
"""Not final: dedupe counts these (a second identical request while one awaits approval is a
duplicate); "one deploy at a time per repo + environment" counts only waiting and running."""
FINAL_STATES = tuple(state for state in DeployState if state.is_final)


class Source(StrEnum):
    """What asked for the deploy."""

    COMMAND = "command"
    BUTTON = "button"
    MERGE = "merge"
    CLI = "cli"


class ActorKind(StrEnum):
    """Where a name comes from: a Slack user id, a GitHub login, a terminal's user, the robot."""

    SLACK = "slack"
    GITHUB = "github"
    CLI = "cli"
    ROBOT = "robot"


@dataclass(frozen=True)
class Actor:
    """Who did something, qualified by kind: a GitHub login shaped like a Slack id is not that user.

    Stored as ``kind:name`` (``slack:U012ABCDEF``, ``github:alice``, ``cli:root``).
    """

    kind: ActorKind
    name: str

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.name}"

    @classmethod
    def parse(cls, stored: str, source: Source | None = None) -> Actor:
        """An actor as stored; rows from before qualified names are read by their deploy's source."""
        kind, sep, name = stored.partition(":")
        if sep and kind in _ACTOR_KINDS:
            return cls(ActorKind(kind), name)
        if stored == ActorKind.ROBOT.value:
            return cls(ActorKind.ROBOT, stored)
        legacy = {Source.MERGE: ActorKind.GITHUB, Source.CLI: ActorKind.CLI}
        return cls(legacy.get(source, ActorKind.SLACK) if source else ActorKind.SLACK, stored)


_ACTOR_KINDS = frozenset(kind.value for kind in ActorKind)
ROBOT = Actor(ActorKind.ROBOT, "robot")


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
    rollback_of: int | None = None
    """A rollback: the deploy it undoes. Its SHA succeeded there before, so no CI gate."""
    approval_timeout: float | None = None
    """Set when its environment wants approvals: it starts ``awaiting_approval`` and expires
    after this many seconds without enough of them."""


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
    owner_id: int | None = None
    """The robot process running it (while running); None before processes were recorded."""
    step_pgid: int | None = None
    """The process group of the step running now, as its owner recorded it."""
    recheck_at: datetime | None = None
    """While ``waiting``: when its CI gate is next due for a re-check."""
    root_ts: str | None = None
    """The Slack message showing the deploy (its root), once posted; ``message_ts`` is the
    thread it lives in: the root itself, or the merge announcement a merge deploy replies to."""
    root_claimed_at: datetime | None = None
    """When some process claimed posting the root, until it records the root's ts."""
    waiting_for: str | None = None
    """While ``waiting``: what it waits for (the pending contexts), one line."""
    rollback_of: int | None = None
    """A rollback: the deploy it undoes (the one whose SHA was current, or a failed one)."""

    @property
    def short_sha(self) -> str:
        return self.sha[:7]

    @property
    def requester(self) -> Actor:
        return Actor.parse(self.requested_by, self.source)

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or datetime.now(self.started_at.tzinfo)
        return (end - self.started_at).total_seconds()


ROLLBACK_MARK = "⏪ rollback"
"""How history shows a rollback, in the terminal and in Slack."""


@dataclass(frozen=True)
class RollbackChoice:
    """Where a repo + environment would roll back to, read from its history.

    ``current``: the newest succeeded deploy there. ``undone``: every SHA rolled back from
    there, i.e. the SHA of some deploy that a *succeeded* rollback there names in its
    ``rollback_of``. ``target``: the newest succeeded deploy whose SHA is neither the current
    one nor undone (so a second rollback goes further back, never forward to what it undid).
    """

    repo: str
    env: str
    current: Deploy | None
    target: Deploy | None
    undone: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Approval:
    """One approval of a deploy: who (``kind:name``) and when."""

    deploy_id: int
    approver: str
    at: datetime

    @property
    def actor(self) -> Actor:
        return Actor.parse(self.approver)


@dataclass(frozen=True)
class ApprovalResult:
    """What one approve did: ``recorded`` False when that approver had approved already (or the
    deploy no longer awaits approval); ``queued`` True when this approval queued the deploy."""

    deploy: Deploy
    approvals: tuple[Approval, ...]
    recorded: bool
    queued: bool


@dataclass(frozen=True)
class ApprovalView:
    """What a root shows of a deploy's approvals: who may approve, who did, break glass."""

    required: int
    approvers: tuple[str, ...]
    """Slack user / user-group ids; empty: anyone may (no approvers and no deployers listed)."""
    approvals: tuple[Approval, ...] = ()
    break_glass: bool = False


class ProcessKind(StrEnum):
    """Which command a robot process runs."""

    RUN = "run"
    DEPLOY = "deploy"


@dataclass(frozen=True)
class ProcessInfo:
    """What a robot process says of itself when it registers: where it runs and what it is."""

    host: str
    pid: int
    boot_id: str
    """Linux's random id of the current boot: the same host and boot id means the same machine."""
    kind: ProcessKind


@dataclass(frozen=True)
class RobotProcess:
    """A registered robot process and its last heartbeat."""

    id: int
    host: str
    pid: int
    boot_id: str
    kind: ProcessKind
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None = None

    def same_machine(self, info: ProcessInfo) -> bool:
        """Whether this process ran where ``info`` runs now (same host name and same boot)."""
        return (self.host, self.boot_id) == (info.host, info.boot_id)


@dataclass(frozen=True)
class Orphan:
    """A running deploy whose owner's lease expired (``owner`` None: no owner or an unknown one)."""

    deploy: Deploy
    owner: RobotProcess | None


@dataclass(frozen=True)
class Lock:
    """A repo + environment that refuses deploys until unlocked."""

    repo: str
    env: str
    locked_by: str
    reason: str
    locked_at: datetime
    expires_at: datetime | None = None
    """When the lock lets go by itself; None: it holds until someone unlocks."""

    @property
    def locker(self) -> Actor:
        return Actor.parse(self.locked_by)

    @property
    def duration_seconds(self) -> float | None:
        """How long it was set to last (None: until unlocked)."""
        if self.expires_at is None:
            return None
        return (self.expires_at - self.locked_at).total_seconds()

    def remaining_seconds(self, now: datetime) -> float | None:
        """Seconds left at ``now`` (0 once expired); None for a lock without a duration."""
        if self.expires_at is None:
            return None
        return max(0.0, (self.expires_at - now).total_seconds())


@dataclass(frozen=True)
class LockEvent:
    """A lock or an unlock as the history keeps it: who (``kind:name``), when, and the lock's reason."""

    repo: str
    env: str
    action: str  # "locked" | "unlocked"
    actor: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class BranchHead:
    """The last branch head the poller saw, with the ETag that makes the next poll cheap."""

    repo: str
    sha: str
    etag: str | None = None
    owed_from: str | None = None  # the move from this SHA was claimed but not announced yet
    owed_by: int | None = None  # … by this process, which posts it


@dataclass(frozen=True)
class EnvironmentView:
    """One environment as `/deploy where` shows it."""

    repo: str
    env: str
    is_default: bool
    lock: Lock | None
    last: Deploy | None


class ContextState(StrEnum):
    """The state of one required CI context for a commit."""

    SUCCESS = "success"
    PENDING = "pending"
    FAILURE = "failure"
    MISSING = "missing"


@dataclass(frozen=True)
class RequiredContext:
    """A CI context the gate requires.

    ``app``: only check runs of that GitHub App (its slug) count, and no commit status (anyone
    with write access can post one). ``accept``: check-run conclusions besides `success` that
    count as green for this context (`neutral`, `skipped`); elsewhere they block.
    """

    name: str
    app: str | None = None
    accept: frozenset[str] = frozenset()


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


TAIL_LINES = 40
"""How many last lines of output a step result keeps, and a failed step shows."""
MAX_LINE = 64 * 1024
"""Step output lines longer than this many bytes are cut, and end with LINE_CUT_MARK."""
LINE_CUT_MARK = " …[line cut at 64 KiB]"


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


# ---- how the robot authenticates to GitHub -----------------------------------------------


@dataclass(frozen=True)
class AppCredentials:
    """A GitHub App the robot acts as: its id, its private key (PEM), optionally a pinned installation."""

    app_id: int
    private_key: str = field(repr=False)
    installation_id: int | None = None


# ---- what GitHub answers the merge poller ------------------------------------------------


@dataclass(frozen=True)
class HeadPoll:
    """One conditional read of a branch head, with the pacing headers GitHub sent along."""

    sha: str | None  # None: 304, the branch is where the ETag says
    etag: str | None
    poll_interval: float | None = None  # X-Poll-Interval
    limit: int | None = None  # X-RateLimit-Limit
    remaining: int | None = None  # X-RateLimit-Remaining
    reset: float | None = None  # X-RateLimit-Reset, epoch seconds


@dataclass(frozen=True)
class CommitInfo:
    """A commit as the compare API lists it."""

    sha: str
    title: str  # first line of the message
    parents: tuple[str, ...]
    author: str = ""  # the author's GitHub login, else the name in the commit
    committed_at: datetime | None = None

    @property
    def pull_number(self) -> int | None:
        """The pull request the title names (`Fix login (#123)`, `Merge pull request #123 from …`)."""
        found = _PULL_IN_TITLE.search(self.title)
        return int(found.group(1) or found.group(2)) if found else None


_PULL_IN_TITLE = re.compile(r"\(#([0-9]{1,9})\)\s*$|^Merge pull request #([0-9]{1,9})\b")


@dataclass(frozen=True)
class Comparison:
    """What ``head`` has that ``base`` has not.

    ``status`` is GitHub's (identical, ahead, behind, diverged) or ``unrelated`` when GitHub finds
    no common history (a force push onto a new root, or an old head GitHub no longer has).
    ``commits`` are oldest first and at most 250 (GitHub's cap per answer).
    """

    status: str
    ahead_by: int
    behind_by: int
    total_commits: int
    commits: tuple[CommitInfo, ...]


@dataclass(frozen=True)
class PullInfo:
    """A pull request associated with a commit; ``merged_by`` is filled only by ``pull_request``."""

    number: int
    title: str
    author: str
    base: str
    merged: bool
    merge_commit_sha: str | None
    url: str | None
    merged_by: str | None = None


# ---- what the merge poller tells the announcer -------------------------------------------


@dataclass(frozen=True)
class MergedPull:
    """A merged pull request; logins are GitHub's, not Slack's."""

    number: int
    title: str
    author: str
    merged_by: str | None = None  # None when not looked up (beyond the lookup cap) or unknown
    url: str | None = None


@dataclass(frozen=True)
class Change:
    """One commit on the branch's first-parent line: a merged pull request, or a direct push."""

    sha: str
    title: str  # first line of the commit message; "" when GitHub did not list the commit
    pull: MergedPull | None = None  # None: pushed without a pull request

    @property
    def direct(self) -> bool:
        return self.pull is None


@dataclass(frozen=True)
class MergeNews:
    """A branch head that moved since the last announcement: one of these per repo per poll."""

    repo: str
    branch: str
    sha: str  # the new head: what every Deploy button deploys
    previous_sha: str  # the head announced (or first seen) before
    changes: tuple[Change, ...]  # newest first; empty after a force push back to an older commit
    total_commits: int  # commits new on the branch, all parents counted (≥ len(changes))
    truncated: bool  # more first-parent commits arrived than were looked up
    forced: bool  # force-pushed: the previous head is not an ancestor of the new one
    ci: GateResult  # the required contexts for ``sha``; empty and green when none are required
    environments: tuple[str, ...]  # one Deploy button each, in config order
    auto_deploy_env: str | None  # set when on_merge is deploy: the poller requests that deploy next
    channel: str  # the repo's channel
    commit_url: str  # web page of ``sha``

    @property
    def pulls(self) -> tuple[MergedPull, ...]:
        """The merged pull requests, newest first, each once."""
        seen: dict[int, MergedPull] = {}
        for change in self.changes:
            if change.pull is not None and change.pull.number not in seen:
                seen[change.pull.number] = change.pull
        return tuple(seen.values())

    @property
    def head_pull(self) -> MergedPull | None:
        """The pull request that produced ``sha``; None for a direct push or a force push."""
        if self.changes and self.changes[0].sha == self.sha:
            return self.changes[0].pull
        return None

    @property
    def direct_pushes(self) -> tuple[Change, ...]:
        """Commits that reached the branch without a pull request, newest first."""
        return tuple(c for c in self.changes if c.direct)

    @property
    def merger(self) -> str | None:
        """Who merged the head's pull request (its author when GitHub does not say)."""
        pull = self.head_pull
        if pull is None:
            return None
        return pull.merged_by or pull.author or None

    @property
    def ci_summary(self) -> str:
        """``success``, ``failure``, ``pending`` or ``missing`` (the worst context wins)."""
        states = {c.state for c in self.ci.contexts}
        for state in (ContextState.FAILURE, ContextState.PENDING, ContextState.MISSING):
            if state in states:
                return state.value
        return ContextState.SUCCESS.value


@dataclass(frozen=True)
class AnnouncementRef:
    """Where an announcement was posted; an auto-deploy uses it as its root message."""

    channel: str
    ts: str


@dataclass(frozen=True)
class CheckResult:
    """One line of `robot check`: what was checked, whether it is fine, and what was found."""

    what: str
    ok: bool
    detail: str


class AutoDeployStatus(StrEnum):
    """Where a merge's auto-deploy stands; ``pending`` is the only one that still moves."""

    PENDING = "pending"  # claimed with its merge: waits for green CI and an unlocked environment
    QUEUED = "queued"  # its deploy was queued (in the same transaction)
    EXPIRED = "expired"  # never deployed: CI not green in time, a newer merge, or a refusal


@dataclass(frozen=True)
class AutoDeploy:
    """The one auto-deploy of a merge to its repo's ``auto_deploy`` environment."""

    repo: str
    env: str
    sha: str
    status: AutoDeployStatus
    requested_by: str
    deadline: datetime  # CI must be green by then (``ci_timeout`` after the merge was claimed)
    channel: str | None = None  # the announcement it threads under
    message_ts: str | None = None
    deploy_id: int | None = None
    note: str | None = None  # the last thing said about it (said once)


@dataclass(frozen=True)
class HeadClaim:
    """What ``claim_head`` won: the head (only its winner announces), and a new auto-deploy claim."""

    claimed: bool
    auto_deploy: AutoDeploy | None = None  # None: none asked, or this SHA's was claimed before


# ---- what a deploy ships: its change list ------------------------------------------------


class ChangeKind(StrEnum):
    """How a deploy's commit stands against what its environment runs now."""

    FIRST = "first"  # nothing succeeded there before
    AHEAD = "ahead"
    BEHIND = "behind"  # a rollback
    IDENTICAL = "identical"  # a redeploy
    DIVERGED = "diverged"  # a force push: some commits come, some go
    UNAVAILABLE = "unavailable"  # GitHub could not say (an error, or no common history)


@dataclass(frozen=True)
class ChangeList:
    """What deploying ``head_sha`` changes in an environment, against its newest succeeded deploy.

    ``commits`` are the ones it ships, oldest first (at most GitHub's 250); ``ahead_by`` counts
    them all. Titles and authors are already redacted.
    """

    kind: ChangeKind
    head_sha: str
    base_sha: str | None = None
    base_deploy_id: int | None = None
    base_at: datetime | None = None  # when the base deploy ended
    ahead_by: int = 0
    behind_by: int = 0
    commits: tuple[CommitInfo, ...] = ()
    note: str = ""  # why it is unavailable, one line


# --- DORA figures: what the store sums up per day; bot/dora.py makes the figures of it ---------
# `day` counts whole days back from the window's end: 0 is its last 24 hours.


@dataclass(frozen=True)
class DoraDay:
    """One repo + environment's finished deploys (succeeded or failed) on one day of a window.

    ``rolled_back``: of the succeeded ones, those a rollback was requested for within 24 hours.
    """

    repo: str
    env: str
    day: int
    succeeded: int
    failed: int
    rolled_back: int


@dataclass(frozen=True)
class LeadSample:
    """One commit's lead time: its commit time → the end of the first succeeded deploy shipping it."""

    repo: str
    env: str
    day: int
    seconds: float


@dataclass(frozen=True)
class Incident:
    """A run of failed or rolled-back deploys in one environment, from the first one's end to the
    end of the next good deploy there (``seconds`` None: not recovered yet)."""

    repo: str
    env: str
    day: int
    seconds: float | None


@dataclass(frozen=True)
class DoraHistory:
    """What the DORA figures are made of, for some environments over a number of days."""

    days: tuple[DoraDay, ...] = ()
    leads: tuple[LeadSample, ...] = ()
    incidents: tuple[Incident, ...] = ()

# ---- App Home ------------------------------------------------------------------------------


@dataclass(frozen=True)
class HomeViewer:
    """A Slack user who opened the robot's App Home: when they last did, and the repo filter they chose."""

    user: str  # a Slack user id
    opened_at: datetime
    repo_filter: str | None = None  # None: every repo, the most recently active first
