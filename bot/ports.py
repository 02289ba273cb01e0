"""The small interfaces at each boundary; tests replace them with hand-written fakes."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from bot.models import (
    Actor,
    AnnouncementRef,
    Approval,
    ApprovalResult,
    AutoDeploy,
    BranchHead,
    ChangeList,
    Comparison,
    Deploy,
    DeployRequest,
    DeployState,
    DoraHistory,
    GateResult,
    HeadClaim,
    HeadPoll,
    HomeViewer,
    Lock,
    MergeNews,
    Orphan,
    ProcessInfo,
    PullInfo,
    RequiredContext,
    RobotProcess,
    RollbackChoice,
    Source,
    Step,
    StepResult,
    TaskEvent,
)


class GitHubPort(Protocol):
    """Everything the robot asks of GitHub."""

    def resolve_ref(self, repo: str, ref: str) -> str:
        """The commit SHA of a branch, tag or SHA; raises InvalidRef if GitHub does not know it."""
        ...

    def ci_state(self, repo: str, sha: str, contexts: Sequence[RequiredContext | str]) -> GateResult:
        """Each required context's state for the commit (a bare name: a context with defaults).

        The newest report of each name wins, except that no commit status overrides a check run
        that is failing or still running; `neutral` / `skipped` conclusions are green only where
        the context accepts them; an app-pinned context reads only that app's check runs.
        """
        ...

    def create_deployment(
        self,
        repo: str,
        sha: str,
        environment: str,
        required_contexts: Sequence[str],
        payload: Mapping[str, object],
        description: str,
    ) -> int:
        """Create a Deployment and return its id; raises DeploymentRefused on 409/422."""
        ...

    def set_deployment_status(
        self,
        repo: str,
        deployment_id: int,
        state: str,
        description: str,
        log_url: str | None = None,
    ) -> None:
        """Post a deployment status; description is cut to 140 characters."""
        ...

    def commit_url(self, repo: str, sha: str) -> str:
        """The web address of a commit (for links in messages)."""
        ...


class ChangeGitHub(Protocol):
    """What change lists ask of GitHub (GitHubGateway): a ref's SHA and one compare per SHA pair."""

    def resolve_ref(self, repo: str, ref: str) -> str: ...

    def compare(self, repo: str, base: str, head: str) -> Comparison:
        """The commits on ``head`` since ``base``; no common history → status ``unrelated``."""
        ...

    def compare_url(self, repo: str, base: str, head: str) -> str:
        """The web page comparing the two (for links in messages)."""
        ...


class ChangeFeed(Protocol):
    """Says when some process changed the queue (queued, finished, cancelled, parked, unlocked)."""

    def wait(self, timeout: float) -> bool:
        """Block until a change (True; also when the feed cannot tell) or ``timeout`` s of quiet."""
        ...

    def close(self) -> None: ...


class StorePort(Protocol):
    """The source of truth for deploys, queue, locks, logs and last-seen heads."""

    def create_deploy(self, request: DeployRequest, owner: int | None = None) -> tuple[Deploy, bool]:
        """Queue a deploy; if the same repo+env+sha is queued or running, return it and False.

        ``owner``: the process that will run it (a terminal's deploy): queued for that process.
        """
        ...

    def get_deploy(self, deploy_id: int) -> Deploy | None: ...

    def claim_next(
        self, only_id: int | None = None, owner: int | None = None, lease: float | None = None
    ) -> Deploy | None:
        """Atomically move the oldest claimable queued deploy to running (one per repo+env),
        recording ``owner`` (the claiming process) in the same write. With ``lease``, a deploy
        queued for another process is left to it while that process beat within ``lease`` s."""
        ...

    def update_deploy(self, deploy_id: int, **fields: object) -> Deploy:
        """Set github_deployment_id, channel, message_ts or error."""
        ...

    def finish_deploy(self, deploy_id: int, state: DeployState, error: str | None) -> Deploy:
        """Move a deploy to a final state and stamp finished_at."""
        ...

    def cancel_queued(self, deploy_id: int) -> Deploy | None:
        """Queued → cancelled in one conditional write; None if it was not queued."""
        ...

    def request_cancel(self, deploy_id: int) -> Deploy | None:
        """Flag a running deploy for cancellation; None if it was not running."""
        ...

    def claim_root(self, deploy_id: int, stale_after: float) -> str | None:
        """Claim posting the deploy's root message (one conditional write): a token for
        ``record_root``, or None when it is posted or another claim younger than
        ``stale_after`` s stands."""
        ...

    def record_root(self, deploy_id: int, token: str, channel: str, ts: str) -> bool:
        """Record the root posted under claim ``token``; False if that claim was taken over."""
        ...

    def park(self, deploy_id: int, owner: int | None, note: str, recheck_in: float) -> Deploy | None:
        """Running → waiting (CI pending, ``note`` says for what), its owner released, due again
        in ``recheck_in`` s; None if not ``owner``'s running deploy any more or a cancel was asked."""
        ...

    def claim_recheck(self, recheck_in: float, only_id: int | None = None) -> Deploy | None:
        """Claim the re-check of the oldest due waiting deploy (its next one pushed ``recheck_in``
        s on in the same conditional write); None when none is due."""
        ...

    def next_recheck(self) -> datetime | None:
        """When the soonest waiting deploy is due for a re-check, or deploy awaiting approval
        for its expiry (None: nothing waits)."""
        ...

    def update_waiting(self, deploy_id: int, note: str) -> Deploy | None:
        """Replace a waiting deploy's note; None if it is not waiting any more."""
        ...

    def resume(self, deploy_id: int, owner: int | None) -> Deploy | None:
        """Waiting → running for ``owner``; None if it is not waiting any more."""
        ...

    def finish_waiting(self, deploy_id: int, state: DeployState, error: str) -> Deploy | None:
        """Waiting → a final state; None if it was not waiting."""
        ...

    def watch(self) -> ChangeFeed:
        """A feed of queue changes made by any process (the caller closes it)."""
        ...

    def approve(self, deploy_id: int, approver: str, required: int) -> ApprovalResult:
        """Record ``approver``'s approval once; the ``required``-th moves the deploy
        awaiting_approval → queued in the same conditional write (never twice)."""
        ...

    def finish_approval(self, deploy_id: int, state: DeployState, error: str) -> Deploy | None:
        """Awaiting approval → a final state (rejected, cancelled); None if it was not awaiting."""
        ...

    def expire_approval(self, error: str, only_id: int | None = None) -> Deploy | None:
        """The oldest deploy awaiting approval past its ``recheck_at``, now expired (one
        conditional write); None when none is due."""
        ...

    def list_approvals(self, deploy_ids: Sequence[int]) -> dict[int, tuple[Approval, ...]]:
        """Each deploy's approvals, oldest first (deploys with none are absent)."""
        ...

    def record_step(self, deploy_id: int, pgid: int | None) -> bool:
        """Record or clear the running step's process group; False if the deploy is not running."""
        ...

    def orphaned_deploys(self, lease: float, exclude: int | None = None) -> list[Orphan]:
        """Running deploys whose owner is unknown, stopped, or silent for over ``lease`` seconds."""
        ...

    def take_over(
        self, deploy_id: int, lease: float, error: str, lock_reason: str | None = None
    ) -> Deploy | None:
        """Running → interrupted only while its owner is still past its lease (one conditional
        write), locking repo + env in the same transaction when ``lock_reason`` is given."""
        ...

    def register_process(self, info: ProcessInfo) -> RobotProcess:
        """Record a starting robot process; its first heartbeat is now."""
        ...

    def heartbeat(self, process_id: int) -> None:
        """Renew the process's lease."""
        ...

    def stop_process(self, process_id: int) -> None:
        """Record a clean stop."""
        ...

    def get_process(self, process_id: int) -> RobotProcess | None: ...

    def prune_processes(self, silent_for: float) -> int:
        """Delete rows of processes silent for over ``silent_for`` s that own no active deploy."""
        ...

    def list_deploys(
        self,
        repo: str | None = None,
        env: str | None = None,
        states: Sequence[DeployState] | None = None,
        limit: int = 50,
        since: datetime | None = None,
    ) -> list[Deploy]:
        """Newest first; ``since``: only those created at or after it."""
        ...

    def last_succeeded(self, repo: str, env: str) -> Deploy | None: ...

    def rollback_choice(self, repo: str, env: str) -> RollbackChoice:
        """The current deploy of repo + env, what it would roll back to, and the SHAs undone there."""
        ...

    def append_log(self, deploy_id: int, lines: Sequence[str]) -> None: ...

    def read_log(self, deploy_id: int) -> str: ...

    def prune_logs(self, finished_before: datetime) -> int:
        """Delete the logs of deploys that ended before that moment (their rows stay); how many."""
        ...

    def set_lock(
        self, repo: str, env: str, locked_by: str, reason: str, duration: timedelta | None = None
    ) -> Lock:
        """Lock repo+env, until ``duration`` has passed when given (else until unlocked)."""
        ...

    def get_lock(self, repo: str, env: str) -> Lock | None:
        """The lock that holds repo+env now (an expired one holds nothing)."""
        ...

    def list_locks(self, repo: str | None = None) -> list[Lock]:
        """The locks that hold now, by repo then environment."""
        ...

    def remove_lock(self, repo: str, env: str, unlocked_by: str) -> Lock | None:
        """Unlock repo+env, recording who did (the lock history keeps it)."""
        ...

    def release_expired_locks(self) -> list[Lock]:
        """Delete the locks whose time ran out (recorded as unlocked by the robot): the ones this
        call deleted. One conditional write: of several processes, one releases each lock."""
        ...

    def next_lock_expiry(self) -> datetime | None:
        """When the soonest lock with a duration lets go (None: none has one)."""
        ...

    def get_head(self, repo: str) -> BranchHead | None: ...

    def set_head(self, head: BranchHead) -> None: ...

    def queue_auto_deploy(self, request: DeployRequest) -> tuple[Deploy, bool] | None:
        """A pending merge auto-deploy → queued with its deploy, one transaction; None if not pending."""
        ...

    # change lists: a shared cache of GitHub comparisons, and what each deploy ships

    def get_comparison(self, repo: str, base: str, head: str) -> Comparison | None:
        """The comparison of two SHAs some robot process fetched before; None if none did."""
        ...

    def put_comparison(self, repo: str, base: str, head: str, comparison: Comparison) -> None:
        """Keep a fetched comparison for every process (the first one kept for a pair stays)."""
        ...

    def record_changes(self, deploy_id: int, changes: ChangeList) -> None:
        """Record a deploy's change list and the commits it ships (replacing any before)."""
        ...

    def get_changes(self, deploy_id: int) -> ChangeList | None:
        """A deploy's change list as recorded; None before it was worked out."""
        ...

    # DORA figures

    def dora_history(self, targets: Sequence[tuple[str, str]], until: datetime, days: int) -> DoraHistory:
        """The deploys of ``targets`` (repo, env) that finished in the ``days`` days before ``until``,
        summed up per day, with the lead time of each commit they shipped first and the incidents."""
        ...

    # App Home viewers

    def open_home(self, user: str) -> HomeViewer:
        """Record that ``user`` opened the App Home now (their repo filter is kept)."""
        ...

    def set_home_filter(self, user: str, repo: str | None) -> HomeViewer:
        """Remember the repo ``user`` filters their App Home on (None: every repo)."""
        ...

    def home_viewers(self, opened_since: datetime) -> list[HomeViewer]:
        """Who opened the App Home at or after ``opened_since``, most recent first."""
        ...


@dataclass
class StepContext:
    """What a step runner needs besides the step: where, with what environment, and callbacks."""

    folder: Path
    env: Mapping[str, str]
    deploy_vars: Mapping[str, str]
    timeout: float
    cancel: threading.Event
    on_output: Callable[[str], None]
    on_task: Callable[[TaskEvent], None]
    kill_grace: float = 5.0
    on_process: Callable[[int], None] = lambda pgid: None
    """Told the process group of the step's child as soon as it starts (so it can be reaped
    if this robot dies); called on the runner's thread."""


class StepRunner(Protocol):
    """Runs one step to completion, streaming output line by line."""

    def run(self, step: Step, ctx: StepContext) -> StepResult: ...


class DeployObserver(Protocol):
    """Told of everything a deploy does, to show it (terminal, Slack thread)."""

    def deploy_changed(self, deploy: Deploy) -> None:
        """State or message fields changed (queued, running, final)."""
        ...

    def gate_waiting(self, deploy: Deploy, gate: GateResult) -> None: ...

    def step_started(self, deploy: Deploy, index: int, total: int, label: str) -> None: ...

    def step_output(self, deploy: Deploy, line: str) -> None:
        """One line of output, already redacted."""
        ...

    def task_event(self, deploy: Deploy, event: TaskEvent) -> None: ...

    def step_finished(self, deploy: Deploy, index: int, result: StepResult) -> None: ...

    def log_url(self, deploy: Deploy) -> str | None:
        """Where the deploy can be followed (GitHub's deployment status log_url), if anywhere."""
        ...


# ---- the merge poller's ports ----------------------------------------------------------


class PollGitHub(Protocol):
    """What the poller asks of GitHub (GitHubGateway)."""

    def poll_head(self, repo: str, branch: str, etag: str | None) -> HeadPoll: ...

    def compare(self, repo: str, base: str, head: str) -> Comparison: ...

    def pulls_for_commit(self, repo: str, sha: str) -> list[PullInfo]: ...

    def pull_request(self, repo: str, number: int) -> PullInfo: ...

    def ci_state(self, repo: str, sha: str, contexts: Sequence[RequiredContext | str]) -> GateResult: ...

    def commit_url(self, repo: str, sha: str) -> str: ...


class PollStore(Protocol):
    """What the poller keeps in the store (SqlStore): heads, auto-deploy claims, who polls."""

    def get_head(self, repo: str) -> BranchHead | None: ...

    def set_head(self, head: BranchHead) -> None: ...

    def claim_head(
        self,
        previous: str | None,
        head: BranchHead,
        auto_deploy: AutoDeploy | None = None,
        *,
        owed: bool = False,
        by: int | None = None,
    ) -> HeadClaim:
        """Move the recorded head from ``previous`` to ``head`` (one conditional write; one winner).

        ``auto_deploy`` is claimed in the same transaction unless its repo + env + SHA was before;
        ``owed``: so is the move's announcement, owed by process ``by`` until it is posted.
        """
        ...

    def announcement_posted(self, repo: str, sha: str) -> bool:
        """Slack took the announcement of the move to ``sha``: it is owed no more."""
        ...

    def reclaim_announcement(self, repo: str, sha: str, by: int | None, lease: float) -> str | None:
        """Take over an owed announcement whose poster is ``by``, nobody, or dead for ``lease`` s
        (one conditional write): the SHA its move came from, or None when not won."""
        ...

    def release_head(self, claimed: BranchHead, previous: BranchHead, auto_deploy: AutoDeploy | None) -> bool:
        """Undo a claim whose announcement failed (and the pending auto-deploy it made)."""
        ...

    def mark_auto_deployed(self, repo: str, env: str, sha: str) -> bool: ...

    def get_auto_deploy(self, repo: str, env: str, sha: str) -> AutoDeploy | None: ...

    def pending_auto_deploys(self) -> list[AutoDeploy]: ...

    def update_auto_deploy(
        self,
        claim: AutoDeploy,
        *,
        thread: tuple[str, str] | None = None,
        note: str | None = None,
        expire: bool = False,
    ) -> bool:
        """Change a pending auto-deploy; False if not pending, or ``note`` is already its note."""
        ...

    def get_lock(self, repo: str, env: str) -> Lock | None: ...

    def lead_poller(self, process_id: int, lease: float) -> bool:
        """Take or keep the right to poll merges; True while this process holds it."""
        ...

    def resign_poller(self, process_id: int) -> None: ...


class DeployRequester(Protocol):
    """The deploy service's request (DeployService)."""

    def request(
        self,
        repo: str,
        *,
        ref: str | None = None,
        env: str | None = None,
        user: Actor,
        source: Source,
        force: bool = False,
        channel: str | None = None,
        message_ts: str | None = None,
    ) -> tuple[Deploy, bool]: ...

    def request_auto_deploy(self, claim: AutoDeploy) -> tuple[Deploy, bool] | None:
        """Queue a pending merge auto-deploy (its claim → queued in the same write); None if not pending."""
        ...


class MergeAnnouncer(Protocol):
    """Posts merge news and problems to the repo's channel (Slack in production)."""

    def announce(
        self, news: MergeNews, posted: Callable[[AnnouncementRef], None] | None = None
    ) -> AnnouncementRef | None:
        """Post one announcement; raise if it was not posted (the poller retries next cycle).

        Return where it went (or None when there is no message to thread under, or it is still
        queued). ``posted`` is called once the post is taken, now or later (on another thread).
        """
        ...

    def announce_problem(self, repo: str, text: str, thread: AnnouncementRef | None = None) -> None:
        """Post a warning about ``repo`` (in ``thread`` when given); ``text`` is plain and one line."""
        ...


class LockNotifier(Protocol):
    """Tells a repo's channel that a lock let go by itself (Slack in production)."""

    def lock_expired(self, lock: Lock) -> None:
        """Say once that ``lock`` expired and was released; never raises for Slack's trouble."""
        ...


# ---- operations ------------------------------------------------------------------------


class Metrics(Protocol):
    """Where the adapters report what an operator scrapes (bot/metrics.py); NO_METRICS ignores it."""

    def slack_call(self, method: str, outcome: str) -> None:
        """One Web API call ended: ``ok``, ``ratelimited``, ``error``, ``server_error`` or ``unreachable``."""
        ...

    def slack_rate_limited(self, method: str) -> None:
        """Slack answered one request with 429 (retried by the client or not)."""
        ...

    def ack_sent(self, seconds: float) -> None:
        """A command or click was acked this long after its listener received it."""
        ...

    def github_response(self, kind: str, status: str, remaining: int | None) -> None:
        """One GitHub call ended with ``status`` (a code, ``2xx`` or ``unreachable``) and rate limit left."""
        ...

    def poll_cycle(self, seconds: float, heads: int, not_modified: int) -> None:
        """A poll cycle took ``seconds``, asked ``heads`` branch heads, ``not_modified`` of them 304."""
        ...


class _NoMetrics:
    """Metrics that go nowhere: the CLI and tests that do not look at metrics pay nothing."""

    def slack_call(self, method: str, outcome: str) -> None:
        pass

    def slack_rate_limited(self, method: str) -> None:
        pass

    def ack_sent(self, seconds: float) -> None:
        pass

    def github_response(self, kind: str, status: str, remaining: int | None) -> None:
        pass

    def poll_cycle(self, seconds: float, heads: int, not_modified: int) -> None:
        pass


NO_METRICS: Metrics = _NoMetrics()


class DoraSource(Protocol):
    """What the DORA figures read: the store's per-day sums (StorePort.dora_history)."""

    def dora_history(self, targets: Sequence[tuple[str, str]], until: datetime, days: int) -> DoraHistory:
        """See StorePort.dora_history."""
        ...
