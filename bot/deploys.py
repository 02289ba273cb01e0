"""The deploy service: requests, dedupe, per-environment FIFO queue, locks, cancel, workers."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.approvals import approval_settings, approvers_of
from bot.config import ApprovalSettings, RepoSettings, Settings
from bot.errors import (
    AccessDenied,
    ApprovalRequired,
    EnvironmentLocked,
    NothingToRollBack,
    StoreError,
    UnknownDeploy,
)
from bot.models import (
    Actor,
    ActorKind,
    ApprovalResult,
    AutoDeploy,
    Deploy,
    DeployRequest,
    DeployState,
    EnvironmentView,
    Lock,
    Orphan,
    ProcessInfo,
    ProcessKind,
    RollbackChoice,
    Source,
)
from bot.pipeline import Pipeline
from bot.ports import ChangeFeed, DeployObserver, GitHubPort, StorePort
from bot.preflight import environment_preflight
from bot.processes import Heartbeat, pid_alive, this_process
from bot.steps.procs import group_alive, stop_groups
from bot.text import fmt_remaining, slack_mentions
from bot.validation import check_ref, check_repo_name

log = logging.getLogger(__name__)

# How often `run_one` (a terminal's deploy) looks at its deploy without a wake-up, and how
# often the cancel watcher looks at this process's running deploys.
_IDLE_POLL_SECONDS = 1.0
# At shutdown this much of the deadline (at most a third of it) is kept for recording how the
# cancelled deploys ended: their steps are SIGKILLed before it, if the grace has not run out.
_STOP_RECORD_SECONDS = 2.0
# Idle workers are woken by the store's change feed (another process queued, finished, parked
# or unlocked something), by this process's own requests, and when a CI re-check falls due;
# without any of those they still look this often (a lost wake-up costs at most this much).
_IDLE_FALLBACK_SECONDS = 10.0
# The feed listener checks for a stop this often.
_LISTEN_SLICE_SECONDS = 2.0
# `run_one` checks its cancel event this often while it waits for a wake-up.
_CANCEL_SLICE_SECONDS = 0.2
_CANCELLED_WAITING = "cancelled while waiting for CI"
_CANCELLED_AWAITING = "cancelled while awaiting approval"
_EXPIRED = "not approved in time"
# Rows of processes silent (stopped or dead) for this long are deleted, unless a running deploy
# names them; some live process does it on a heartbeat, at most this often.
PROCESS_ROWS_KEEP_SECONDS = 24 * 3600.0
PRUNE_PROCESSES_EVERY_SECONDS = 3600.0


@dataclass(frozen=True)
class Target:
    """A repo + environment resolved against the config."""

    repo: str
    env: str


@dataclass(frozen=True)
class _Rollback:
    """What a rollback deploys (``sha``) and the deploy it undoes."""

    sha: str
    undo: int


class DeployService:
    """Turns requests into queued deploys and runs them on its own bounded worker pool."""

    def __init__(
        self,
        settings: Settings,
        store: StorePort,
        github: GitHubPort,
        pipeline: Pipeline,
        observer: DeployObserver,
        environ: Mapping[str, str],
        members_of: Callable[[str], frozenset[str]] = lambda group: frozenset(),
        stop_groups: Callable[[Iterable[int], float], None] = stop_groups,
    ) -> None:
        """``stop_groups`` ends an orphaned step's process groups (SIGTERM, grace, SIGKILL)."""
        self._settings = settings
        self._stop_groups = stop_groups
        self._environ = environ
        self._store = store
        self._github = github
        self._pipeline = pipeline
        self._observer = observer
        self._members_of = members_of
        self._wake = threading.Condition()
        self._wakeups = 0  # bumped under _wake by every wake-up, so none is lost between looks
        self._stopping = threading.Event()
        self._cancels: dict[int, threading.Event] = {}
        self._cancels_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._watcher: threading.Thread | None = None
        self._me: ProcessInfo = this_process(ProcessKind.RUN)
        self._process_id: int | None = None
        self._beats: list[Heartbeat] = []
        self._process_lock = threading.Lock()
        self._lock_watchers: list[Callable[[Lock], None]] = []
        self._next_prune = 0.0  # monotonic; the first heartbeat prunes
        # Deploys created here awaiting approval whose change list a worker has still to work out.
        self._unlisted: deque[int] = deque()

    # --- requests -------------------------------------------------------------------------

    def target(self, repo: str, env: str | None = None) -> Target:
        """Validate and resolve a repo (owner/name or unique name) and environment."""
        full, _ = self._settings.repo(check_repo_name(repo))
        env_name, _ = self._settings.environment(full, env)
        return Target(full, env_name)

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
        approved_by: Actor | None = None,
    ) -> tuple[Deploy, bool]:
        """Queue a deploy (or return the identical one already active, and False).

        Where the environment wants approvals it starts awaiting them, unless forced (break
        glass); a terminal must name its approver (``approved_by``), whose approval it records.
        """
        target = self.target(repo, env)
        settings = self._settings.repos[target.repo]
        # A terminal is the operator's; a merge deploy was allowed by `on_merge: deploy` itself.
        if source not in (Source.CLI, Source.MERGE):
            self._check_access(user, settings.deployers, target.repo, "deploy")
            if force:
                self._check_access(
                    user, settings.force, target.repo, "force a deploy of", empty_means_anyone=False
                )
        self._check_unlocked(target)
        environment_preflight(self._settings, target.repo, target.env, self._environ)
        approval_timeout = self._approval_timeout(target, user, source, force, approved_by)
        ref_name = check_ref(ref or settings.branch)
        sha = self._github.resolve_ref(target.repo, ref_name)
        request = DeployRequest(
            repo=target.repo,
            env=target.env,
            ref=ref_name,
            sha=sha,
            requested_by=str(user),
            source=source,
            force=force,
            channel=channel or self._settings.channel(target.repo),
            message_ts=message_ts,
            approval_timeout=approval_timeout,
        )
        return self._create(request, approved_by)

    def _create(self, request: DeployRequest, approved_by: Actor | None) -> tuple[Deploy, bool]:
        """Record a request (or find its identical active deploy) and tell the workers."""
        # A terminal's deploy is queued for the terminal: it runs it (live output, Ctrl-C), not
        # a `robot run` beside it that a restart would cancel it with.
        owner = self._process_id if request.source is Source.CLI else None
        deploy, created = self._store.create_deploy(request, owner)
        if approved_by is not None and deploy.state is DeployState.AWAITING_APPROVAL:
            # The terminal's operator answers for the approval: it alone queues the deploy (the
            # one just created, or an identical one that was awaiting approval).
            approval = self._store.approve(deploy.id, str(approved_by), 1)
            deploy = approval.deploy
            self._store.append_log(deploy.id, [f"==> approved by {approved_by} (given on the terminal)"])
            if approval.queued and not created:
                self._observer.deploy_changed(deploy)
                self._notify_workers()
        if created:
            self._observer.deploy_changed(deploy)
            self._list_changes_later(deploy)
            self._notify_workers()
        return deploy, created

    def _list_changes_later(self, deploy: Deploy) -> None:
        """Approvers see what they approve: a worker works the change list out (never the
        caller's thread, which may be a Slack listener's)."""
        if deploy.state is DeployState.AWAITING_APPROVAL:
            with self._wake:
                self._unlisted.append(deploy.id)

    def request_auto_deploy(self, claim: AutoDeploy) -> tuple[Deploy, bool] | None:
        """Queue a merge's pending auto-deploy: the claim becomes queued in the write that queues
        the deploy. None when it is no longer pending (another robot queued or expired it)."""
        target = self.target(claim.repo, claim.env)
        self._check_unlocked(target)
        environment_preflight(self._settings, target.repo, target.env, self._environ)
        request = DeployRequest(
            repo=target.repo,
            env=target.env,
            ref=check_ref(claim.sha),
            sha=claim.sha,
            requested_by=claim.requested_by,
            source=Source.MERGE,
            channel=claim.channel or self._settings.channel(target.repo),
            message_ts=claim.message_ts,
            approval_timeout=_timeout(approval_settings(self._settings, target.repo, target.env)),
        )
        queued = self._store.queue_auto_deploy(request)
        if queued is not None and queued[1]:
            self._observer.deploy_changed(queued[0])
            self._list_changes_later(queued[0])
            self._notify_workers()
        return queued

    # --- rollbacks ------------------------------------------------------------------------

    def rollback(
        self,
        repo: str,
        env: str | None = None,
        *,
        user: Actor,
        source: Source,
        channel: str | None = None,
        approved_by: Actor | None = None,
    ) -> tuple[Deploy, bool]:
        """Queue a rollback: redeploy the SHA the environment ran before its current one.

        The target is RollbackChoice's (the newest succeeded SHA there that is neither the
        current one nor one rolled back from); NothingToRollBack says why there is none. A
        deployers' right, like deploying; locks, queue and dedupe as for any deploy.
        """
        target = self.target(repo, env)
        self._check_rollback_right(user, source, target)
        self._check_unlocked(target)
        choice = self._store.rollback_choice(target.repo, target.env)
        if choice.current is None or choice.target is None:
            raise NothingToRollBack(_nothing_to_roll_back(choice))
        rollback = _Rollback(choice.target.sha, choice.current.id)
        return self._queue_rollback(target, rollback, user, source, channel, approved_by)

    def rollback_to(
        self,
        repo: str,
        env: str,
        sha: str,
        undo: int,
        *,
        user: Actor,
        source: Source,
        channel: str | None = None,
        approved_by: Actor | None = None,
    ) -> tuple[Deploy, bool]:
        """A Roll back button: deploy exactly ``sha``, undoing deploy ``undo``, as the button said.

        Refused once the environment moved on since the button was drawn: for a succeeded
        ``undo``, it must still be the current deploy and ``sha`` its rollback target; for a
        failed one, nothing may have succeeded there since and ``sha`` must be the current SHA.
        """
        target = self.target(repo, env)
        self._check_rollback_right(user, source, target)
        self._check_unlocked(target)
        undone = self._store.get_deploy(undo)
        if undone is None or (undone.repo, undone.env) != (target.repo, target.env):
            raise UnknownDeploy(f"There is no deploy #{undo} of {target.repo} {target.env}.")
        choice = self._store.rollback_choice(target.repo, target.env)
        current = choice.current
        if undone.state is DeployState.SUCCEEDED:
            expected = choice.target if current is not None and current.id == undo else None
        else:
            expected = current if current is not None and current.id < undo else None
        if expected is None or expected.sha != sha:
            now = f"#{current.id} ({current.short_sha}) is current" if current else "nothing succeeded there"
            raise NothingToRollBack(
                f"{target.repo} {target.env} moved on since this Roll back button was shown: {now}. "
                f"Use `/deploy rollback {target.repo} to {target.env}`."
            )
        return self._queue_rollback(target, _Rollback(sha, undo), user, source, channel, approved_by)

    def _check_rollback_right(self, user: Actor, source: Source, target: Target) -> None:
        if source is not Source.CLI:  # a terminal is the operator's
            self._check_access(user, self._settings.repos[target.repo].deployers, target.repo, "roll back")

    def _queue_rollback(
        self,
        target: Target,
        rollback: _Rollback,
        user: Actor,
        source: Source,
        channel: str | None,
        approved_by: Actor | None,
    ) -> tuple[Deploy, bool]:
        """A rollback is an ordinary request: it awaits approval where the environment wants it."""
        environment_preflight(self._settings, target.repo, target.env, self._environ)
        request = DeployRequest(
            repo=target.repo,
            env=target.env,
            ref=rollback.sha,
            sha=rollback.sha,
            requested_by=str(user),
            source=source,
            channel=channel or self._settings.channel(target.repo),
            rollback_of=rollback.undo,
            approval_timeout=self._approval_timeout(target, user, source, False, approved_by),
        )
        return self._create(request, approved_by)

    def cancel(self, deploy_id: int, user: Actor, *, operator: bool = False) -> Deploy:
        """Remove a queued deploy, or stop a running one (its process group is killed).

        From Slack only the requester, the repo's deployers (anyone when that list is empty) or
        its force list may cancel; ``operator`` (a terminal) may always.
        """
        deploy = self._store.get_deploy(deploy_id)
        if deploy is None:
            raise UnknownDeploy(f"There is no deploy #{deploy_id}.")
        if not operator and user != deploy.requester:
            repo = self._settings.repos.get(deploy.repo)
            if repo is None or repo.deployers:
                allowed = _deployers_and_force(repo) if repo else []
                self._check_access(user, allowed, deploy.repo, f"cancel deploy #{deploy_id} of", False)
        if deploy.state.is_final:
            raise UnknownDeploy(f"Deploy #{deploy_id} already {deploy.state.value}; nothing to cancel.")
        cancelled = self._store.cancel_queued(deploy_id)
        if cancelled is not None:
            self._store.append_log(deploy_id, [f"==> cancelled by {user} while queued"])
            self._observer.deploy_changed(cancelled)
            return cancelled
        cancelled = self._store.finish_approval(deploy_id, DeployState.CANCELLED, _CANCELLED_AWAITING)
        if cancelled is not None:
            self._store.append_log(deploy_id, [f"==> cancelled by {user} while awaiting approval"])
            self._observer.deploy_changed(cancelled)
            return cancelled
        # No worker holds a waiting deploy: cancelling it is one conditional write too.
        cancelled = self._store.finish_waiting(deploy_id, DeployState.CANCELLED, _CANCELLED_WAITING)
        if cancelled is not None:
            self._store.append_log(deploy_id, [f"==> cancelled by {user} while waiting for CI"])
            self._observer.deploy_changed(cancelled)
            return cancelled
        running = self._store.request_cancel(deploy_id)
        if running is None:
            # It finished between our read and our write: report what it became.
            latest = self._store.get_deploy(deploy_id)
            state = latest.state.value if latest else "gone"
            raise UnknownDeploy(f"Deploy #{deploy_id} already {state}; nothing to cancel.")
        self._store.append_log(deploy_id, [f"==> cancel requested by {user}"])
        self._signal_cancel(deploy_id)
        return running

    # --- locks and status -----------------------------------------------------------------

    def lock(
        self, repo: str, env: str | None, user: Actor, reason: str, duration: timedelta | None = None
    ) -> Lock:
        """Lock repo+env, for ``duration`` or until unlocked: a deployers' right (and the force
        list's), like deploying."""
        target = self.target(repo, env)
        self._check_lock_right(user, target, "lock")
        lock = self._store.set_lock(target.repo, target.env, str(user), reason, duration)
        for watcher in self._lock_watchers:
            watcher(lock)
        return lock

    def watch_locks(self, watcher: Callable[[Lock], None]) -> None:
        """Have ``watcher`` told of every lock set through this service (the expiry's timer)."""
        self._lock_watchers.append(watcher)

    def lock_released(self, lock: Lock) -> None:
        """A lock expired and this process released it: what waited for it goes on, as on an unlock."""
        log.info(
            "%s %s unlocked: %s's lock (since %s) expired: %s",
            lock.repo,
            lock.env,
            lock.locked_by,
            lock.locked_at.isoformat(),
            lock.reason,
        )
        self._notify_workers()

    def unlock(self, repo: str, env: str | None, user: Actor) -> Lock:
        """Unlock repo+env (the same right as lock); who unlocked is logged with the lock it lifted."""
        target = self.target(repo, env)
        self._check_lock_right(user, target, "unlock")
        removed = self._store.remove_lock(target.repo, target.env, str(user))
        if removed is None:
            raise UnknownDeploy(f"{target.repo} {target.env} is not locked.")
        log.info(
            "%s %s unlocked by %s (locked by %s since %s: %s)",
            target.repo,
            target.env,
            user,
            removed.locked_by,
            removed.locked_at.isoformat(),
            removed.reason,
        )
        self._notify_workers()
        return removed

    def _check_lock_right(self, user: Actor, target: Target, action: str) -> None:
        if user.kind is ActorKind.CLI:
            return  # a terminal is the operator's
        self._check_access(
            user,
            _deployers_and_force(self._settings.repos[target.repo]),
            target.repo,
            f"{action} {target.env} of",
        )

    # --- rights, asked before a button is shown (the action checks them again) -------------

    def may_deploy(self, user: Actor, repo: str) -> bool:
        """Whether ``user`` may deploy ``repo`` (without force), as ``request`` would judge."""
        return self._allowed(lambda: self._check_access(user, self._settings.repos[repo].deployers, repo, ""))

    def may_lock(self, user: Actor, repo: str) -> bool:
        """Whether ``user`` may lock and unlock ``repo``'s environments, as ``lock`` would judge."""
        target = Target(repo, "")
        return self._allowed(lambda: self._check_lock_right(user, target, "lock"))

    def may_cancel(self, user: Actor, deploy: Deploy) -> bool:
        """Whether ``user`` may cancel ``deploy``, as ``cancel`` would judge (from Slack)."""
        if user == deploy.requester:
            return True
        repo = self._settings.repos.get(deploy.repo)
        if repo is not None and not repo.deployers:
            return True
        allowed = _deployers_and_force(repo) if repo else []
        return self._allowed(lambda: self._check_access(user, allowed, deploy.repo, "", False))

    def may_approve(self, user: Actor, deploy: Deploy) -> bool:
        """Whether ``user`` may approve ``deploy`` now, as ``approve`` would judge: one of its
        environment's approvers, never its requester (who may still cancel it)."""
        if user == deploy.requester or deploy.state is not DeployState.AWAITING_APPROVAL:
            return False
        if approval_settings(self._settings, deploy.repo, deploy.env) is None:
            return False
        approvers = approvers_of(self._settings, deploy.repo, deploy.env)
        return self._allowed(lambda: self._check_access(user, approvers, deploy.repo, ""))

    @staticmethod
    def _allowed(check: Callable[[], None]) -> bool:
        try:
            check()
        except AccessDenied:
            return False
        return True

    def where(self, repo: str) -> list[EnvironmentView]:
        """Each environment of a repo with its lock and its last deploy."""
        target = self.target(repo)
        settings = self._settings.repos[target.repo]
        views = []
        for env in settings.environments:
            last = self._store.list_deploys(target.repo, env, limit=1)
            views.append(
                EnvironmentView(
                    target.repo,
                    env,
                    env == settings.default_env,
                    self._store.get_lock(target.repo, env),
                    last[0] if last else None,
                )
            )
        return views

    def locks(self, repo: str | None = None) -> list[Lock]:
        return self._store.list_locks(repo)

    def history(
        self,
        repo: str | None = None,
        env: str | None = None,
        states: Sequence[DeployState] | None = None,
        limit: int = 20,
    ) -> list[Deploy]:
        if repo is not None:
            target = self.target(repo, env)
            repo, env = target.repo, (target.env if env else None)
        return self._store.list_deploys(repo, env, states, limit)

    def get(self, deploy_id: int) -> Deploy:
        deploy = self._store.get_deploy(deploy_id)
        if deploy is None:
            raise UnknownDeploy(f"There is no deploy #{deploy_id}.")
        return deploy

    # --- running --------------------------------------------------------------------------

    def register(self, kind: ProcessKind) -> int:
        """Record this process in the store, take over what dead robots left, then keep the lease.

        From now on, every ``state.heartbeat`` seconds one thread renews this process's
        heartbeat and another takes over running deploys whose owners' leases ran out.
        Registering twice returns the first registration.
        """
        with self._process_lock:
            if self._process_id is not None:
                return self._process_id
            self._me = this_process(kind)
            self._process_id = self._store.register_process(self._me).id
            process_id = self._process_id
        self.recover()
        interval = self._settings.state.heartbeat
        self._beats = [
            Heartbeat(lambda: self._beat(process_id), interval, "heartbeat"),
            Heartbeat(self.recover, interval, "lease-watcher"),
        ]
        for beat in self._beats:
            beat.start()
        return process_id

    def _beat(self, process_id: int) -> None:
        """Renew this process's lease; now and then, delete long-silent processes' rows too."""
        self._store.heartbeat(process_id)
        now = time.monotonic()
        if now < self._next_prune:
            return
        self._next_prune = now + PRUNE_PROCESSES_EVERY_SECONDS
        pruned = self._store.prune_processes(PROCESS_ROWS_KEEP_SECONDS)
        if pruned:
            log.info("deleted the rows of %d robot process(es) silent for over a day", pruned)

    def close(self) -> None:
        """Stop the heartbeat and record a clean stop (what this process still runs is anyone's)."""
        with self._process_lock:
            beats, self._beats = self._beats, []
            process_id = self._process_id
        for beat in beats:
            beat.stop()
        if process_id is not None:
            try:
                self._store.stop_process(process_id)
            except StoreError as exc:
                log.warning("could not record this robot's stop (its lease will run out): %s", exc)

    def recover(self) -> list[Deploy]:
        """Take over running deploys whose owners' leases ran out: one pass (GitHub: error).

        An owner on this machine had its step's process group killed first; an owner elsewhere
        (or unknown) may still be running it, so the environment is locked instead, in the same
        write that releases it. Deploys of live owners are never touched.
        """
        lease = self._settings.state.lease
        taken = []
        for orphan in self._store.orphaned_deploys(lease, exclude=self._process_id):
            deploy = self._take_over(orphan, lease)
            if deploy is not None:
                self._pipeline.report_interrupted(deploy)
                self._observer.deploy_changed(deploy)
                taken.append(deploy)
        return taken

    def _take_over(self, orphan: Orphan, lease: float) -> Deploy | None:
        deploy, owner = orphan.deploy, orphan.owner
        lock_reason = None
        here = owner is not None and owner.same_machine(self._me)
        # An owner that recorded its stop cancelled its own deploys first; one whose pid is gone died.
        dead = owner is not None and (owner.stopped_at is not None or not pid_alive(owner.pid))
        if here and dead:
            if deploy.step_pgid is not None:
                # Before the write that frees the environment: its next deploy must not run
                # beside the orphaned step.
                self._stop_groups([deploy.step_pgid], self._settings.deploys.kill_grace)
        elif owner is not None and here:
            # A silent owner that still exists (paused, or stuck on the database) is not dead:
            # its step may be live, so it is not killed; the environment waits for a person.
            lock_reason = (
                f"step of deploy #{deploy.id} may still be running: robot pid {owner.pid} on this host "
                "is alive but sent no heartbeat; unlock when checked"
            )
        else:
            where = owner.host if owner is not None else "an unknown host"
            lock_reason = f"step of deploy #{deploy.id} may still be running on {where}; unlock when checked"
        taken = self._store.take_over(deploy.id, lease, _takeover_error(orphan, lease), lock_reason)
        if taken is not None:
            log.warning(
                "deploy #%s taken over from %s: interrupted%s",
                deploy.id,
                _describe_owner(orphan),
                f"; {deploy.repo} {deploy.env} locked" if lock_reason else "",
            )
        return taken

    def start(self) -> None:
        """Register (taking over what dead robots left), then serve the queue on ``deploys.workers``."""
        self.register(ProcessKind.RUN)
        for number in range(self._settings.deploys.workers):
            thread = threading.Thread(target=self._work, name=f"deploy-worker-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)
        threading.Thread(target=self._listen, name="store-feed", daemon=True).start()

    def stop(self, timeout: float) -> None:
        """Stop claiming, cancel every deploy this process runs, and have each recorded as ended
        (store, GitHub, observer) within ``timeout`` s.

        Steps get SIGTERM at once and SIGKILL when the grace runs out: ``kill_grace``, or less
        when the deadline leaves less. A deploy whose worker is still stuck then (in a GitHub
        call) is recorded cancelled here, unless its step is alive: a live step is never
        released to another process.
        """
        start = time.monotonic()
        end = start + timeout
        kill_at = min(start + self._settings.deploys.kill_grace, end - min(_STOP_RECORD_SECONDS, timeout / 3))
        self._stopping.set()
        # GitHub calls end halfway between the kill and the deadline: what follows them (the
        # observer's final update) must still happen before the deadline.
        self._pipeline.stop_by(kill_at + (end - kill_at) / 2)
        with self._cancels_lock:
            for event in self._cancels.values():
                event.set()
        self._notify_workers()
        self._join_workers(kill_at)
        if self._running():
            self._kill_steps(self._running())
            self._join_workers(end)
        for deploy_id in self._running():
            self._abandon(deploy_id)

    def running_here(self) -> frozenset[int]:
        """The deploys this process runs now, their end included (store, then GitHub, then observer)."""
        with self._cancels_lock:
            return frozenset(self._cancels)

    def _running(self) -> list[int]:
        return sorted(self.running_here())

    def _join_workers(self, until: float) -> None:
        """Wait until the workers have left and no deploy runs here (a terminal's included)."""
        for thread in self._threads:
            thread.join(max(0.0, until - time.monotonic()))
        while self._running() and time.monotonic() < until:
            time.sleep(0.02)

    def _step_group(self, deploy_id: int) -> int | None:
        try:
            deploy = self._store.get_deploy(deploy_id)
        except StoreError as exc:
            log.warning("deploy #%s: step process group unreadable at shutdown: %s", deploy_id, exc)
            return None
        return deploy.step_pgid if deploy is not None else None

    def _kill_steps(self, deploy_ids: Sequence[int]) -> None:
        """The shutdown grace ran out: SIGKILL the steps still running."""
        groups = [pgid for pgid in map(self._step_group, deploy_ids) if pgid is not None]
        if groups:
            log.warning("stopping: SIGKILL to the steps of %d deploy(s) still running", len(groups))
            self._stop_groups(groups, 0)

    def _abandon(self, deploy_id: int) -> None:
        pgid = self._step_group(deploy_id)
        if pgid is not None and group_alive(pgid):
            log.error("deploy #%s: its step (group %s) survived SIGKILL; left running", deploy_id, pgid)
            return
        try:
            self._pipeline.abandon(deploy_id, self._observer)
        except StoreError as exc:
            log.error("deploy #%s: not recorded as cancelled at shutdown: %s", deploy_id, exc)

    def run_one(self, deploy_id: int, cancel: threading.Event, poll: float = _IDLE_POLL_SECONDS) -> Deploy:
        """Wait for ``deploy_id`` to reach the front of its queue, then run it here (the CLI).

        While its CI is pending it waits like any deploy (no thread on it); this process
        re-checks it when due, unless another process got there first.
        """
        owner = self.register(ProcessKind.DEPLOY)
        feed = self._store.watch()
        try:
            cancel_asked = False
            while True:
                handled = self._serve_once(owner, cancel, only_id=deploy_id)
                if handled is not None and handled.state.is_final:
                    return handled
                current = self.get(deploy_id)
                if current.state.is_final:
                    return current
                if cancel.is_set() and not cancel_asked:
                    cancel_asked = True
                    with contextlib.suppress(UnknownDeploy):  # it may have just finished
                        self.cancel(deploy_id, current.requester, operator=True)
                    continue
                # Once cancel was asked, keep looking until the deploy is final, without re-asking.
                wait = self._until_recheck(poll)
                self._await_change(feed, wait, self._stopping if cancel_asked else cancel)
        finally:
            feed.close()

    def _await_change(self, feed: ChangeFeed, timeout: float, interrupt: threading.Event) -> None:
        """Until the feed reports a change, ``timeout`` passes, or ``interrupt`` is set."""
        deadline = time.monotonic() + timeout
        while not interrupt.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or feed.wait(min(remaining, _CANCEL_SLICE_SECONDS)):
                return

    def _until_recheck(self, longest: float) -> float:
        """Seconds until the soonest CI re-check falls due, at most ``longest``."""
        try:
            due = self._store.next_recheck()
        except StoreError:
            return longest
        if due is None:
            return longest
        return min(longest, max((due - datetime.now(UTC)).total_seconds(), 0.01))

    def _serve_once(
        self, owner: int, cancel: threading.Event | None = None, only_id: int | None = None
    ) -> Deploy | None:
        """Claim and run (or park) the next queued deploy, else work out a change list awaited by
        approvers, else end an expired approval, else claim one due CI re-check.

        Returns the deploy it dealt with, as it is now; None when there was nothing to do.
        """
        deploy = self._store.claim_next(only_id=only_id, owner=owner, lease=self._settings.state.lease)
        if deploy is not None:
            self._ring()  # more may be claimable: another idle worker looks
            return self._run(deploy, cancel or threading.Event())
        listed = self._list_awaiting() if only_id is None else None
        if listed is not None:
            return listed
        expired = self._expire_approval(only_id)
        if expired is not None:
            return expired
        waiting = self._store.claim_recheck(self._settings.deploys.ci_poll_interval, only_id)
        if waiting is None:
            return None
        self._ring()
        running = self._pipeline.recheck(waiting, self._observer, owner)
        if running is None:
            return self._store.get_deploy(waiting.id) or waiting
        return self._run(running, cancel or threading.Event(), gated=True)

    def _work(self) -> None:
        owner = self.register(ProcessKind.RUN)
        while not self._stopping.is_set():
            with self._wake:
                seen = self._wakeups
            try:
                handled = self._serve_once(owner)
            except StoreError as exc:
                log.warning("cannot claim deploys, retrying: %s", exc)
                self._stopping.wait(_IDLE_POLL_SECONDS)
                continue
            except Exception:
                # The worker outlives any one deploy: a deploy the store could not finish stays
                # running until this process stops, then another robot takes it over.
                log.exception("deploy worker fault")
                handled = None
            if handled is None:
                self._idle(seen)

    def _idle(self, seen: int) -> None:
        """Sleep until a wake-up newer than ``seen``, the next CI re-check, or the fallback."""
        timeout = self._until_recheck(_IDLE_FALLBACK_SECONDS)
        with self._wake:
            if self._wakeups == seen and not self._stopping.is_set():
                self._wake.wait(timeout)

    def _listen(self) -> None:
        """Turn the store's change feed (other processes' writes) into wake-ups of one worker."""
        try:
            feed = self._store.watch()
        except StoreError as exc:
            log.warning("no store change feed (workers look every %g s): %s", _IDLE_FALLBACK_SECONDS, exc)
            return
        try:
            while not self._stopping.is_set():
                if feed.wait(_LISTEN_SLICE_SECONDS):
                    self._ring()
        finally:
            feed.close()

    def _run(self, deploy: Deploy, cancel: threading.Event, gated: bool = False) -> Deploy:
        with self._cancels_lock:
            self._cancels[deploy.id] = cancel
            if self._watcher is None:
                self._watcher = threading.Thread(
                    target=self._watch_cancels, name="cancel-watcher", daemon=True
                )
                self._watcher.start()
        if deploy.cancel_requested or self._stopping.is_set():
            cancel.set()
        try:
            return self._pipeline.run(deploy, self._observer, cancel, gated)
        finally:
            with self._cancels_lock:
                self._cancels.pop(deploy.id, None)

    def _watch_cancels(self) -> None:
        """Cancels asked by another robot process arrive through the store's flag; a deploy
        another robot took over (this one's lease ran out) is stopped here too."""
        while not self._stopping.wait(_IDLE_POLL_SECONDS):
            with self._cancels_lock:
                local = list(self._cancels)
            for deploy_id in local:
                try:
                    deploy = self._store.get_deploy(deploy_id)
                except StoreError:
                    continue  # the next round asks again
                if deploy is not None and (deploy.cancel_requested or deploy.state.is_final):
                    self._signal_cancel(deploy_id)

    def _signal_cancel(self, deploy_id: int) -> None:
        with self._cancels_lock:
            event = self._cancels.get(deploy_id)
        if event is not None:
            event.set()

    def _notify_workers(self) -> None:
        with self._wake:
            self._wakeups += 1
            self._wake.notify_all()

    def _ring(self) -> None:
        """Wake one idle worker (it wakes the next if it finds work: no herd on every change)."""
        with self._wake:
            self._wakeups += 1
            self._wake.notify()

    # --- approvals ------------------------------------------------------------------------

    def approve(self, deploy_id: int, user: Actor) -> ApprovalResult:
        """Approve a deploy awaiting approval: an approver's right, never its requester's.

        Each approver counts once; the approval that makes ``required`` queues it (one
        conditional write in the store, so two processes approving at once queue it once).
        """
        deploy, approvals = self._awaiting(deploy_id, user, "approve")
        if user == deploy.requester:
            raise AccessDenied(f"You requested deploy #{deploy_id}: someone else must approve it.")
        result = self._store.approve(deploy_id, str(user), approvals.required)
        if not result.recorded:
            return result
        count = f"{len(result.approvals)}/{approvals.required}"
        self._store.append_log(deploy_id, [f"==> approved by {user} ({count})"])
        if result.queued:
            self._notify_workers()
        self._observer.deploy_changed(result.deploy)
        return result

    def reject(self, deploy_id: int, user: Actor, reason: str = "") -> Deploy:
        """Reject a deploy awaiting approval (an approver's right): it ends ``rejected``."""
        self._awaiting(deploy_id, user, "reject")
        why = f"rejected by {user}" + (f": {reason}" if reason else "")
        rejected = self._store.finish_approval(deploy_id, DeployState.REJECTED, why)
        if rejected is None:
            raise UnknownDeploy(
                f"Deploy #{deploy_id} is {self.get(deploy_id).state.value}; it awaits no approval."
            )
        self._store.append_log(deploy_id, [f"==> {why}"])
        self._observer.deploy_changed(rejected)
        return rejected

    def _awaiting(self, deploy_id: int, user: Actor, action: str) -> tuple[Deploy, ApprovalSettings]:
        """The deploy, awaiting approval, and its environment's approvals, once ``user`` may
        approve or reject there."""
        deploy = self.get(deploy_id)
        approvals = approval_settings(self._settings, deploy.repo, deploy.env)
        if approvals is None:
            raise UnknownDeploy(f"Deploy #{deploy_id} needs no approval ({deploy.env} wants none).")
        approvers = approvers_of(self._settings, deploy.repo, deploy.env)
        self._check_access(user, approvers, deploy.repo, f"{action} deploys to {deploy.env} of")
        if deploy.state is not DeployState.AWAITING_APPROVAL:
            raise UnknownDeploy(f"Deploy #{deploy_id} is {deploy.state.value}; it awaits no approval.")
        return deploy, approvals

    def _approval_timeout(
        self, target: Target, user: Actor, source: Source, force: bool, approved_by: Actor | None
    ) -> float | None:
        """How long a new deploy awaits approval; None when it need not (no `approvals:`, or a
        Slack break glass). A terminal always names its approver, forced or not: the approval is
        recorded and queues the deploy at once."""
        approvals = approval_settings(self._settings, target.repo, target.env)
        if approvals is None:
            if approved_by is not None:
                raise ApprovalRequired(
                    f"--approved-by: {target.repo} {target.env} wants no approvals; leave it out."
                )
            return None
        if source is Source.CLI:
            if approved_by is None:
                raise ApprovalRequired(
                    f"{target.repo} {target.env} needs approval: name its approver with --approved-by NAME."
                )
            if approved_by.name == user.name:
                raise AccessDenied("You requested this deploy: --approved-by must name someone else.")
            return approvals.timeout
        return None if force else approvals.timeout

    def _list_awaiting(self) -> Deploy | None:
        """Work out one pending change list of a deploy awaiting approval; None when none is pending."""
        while True:
            with self._wake:
                if not self._unlisted:
                    return None
                deploy_id = self._unlisted.popleft()
            listed = self._pipeline.list_awaiting(deploy_id, self._observer)
            if listed is not None:
                return listed

    def _expire_approval(self, only_id: int | None) -> Deploy | None:
        """End one deploy whose approval time ran out (whichever process notices first)."""
        expired = self._store.expire_approval(_EXPIRED, only_id)
        if expired is None:
            return None
        self._ring()  # more may be due
        self._store.append_log(expired.id, [f"==> expired: {expired.error}"])
        log.info("deploy #%s expired: no approval in time", expired.id)
        self._observer.deploy_changed(expired)
        return expired

    # --- checks ---------------------------------------------------------------------------

    def _check_access(
        self,
        user: Actor,
        allowed: Sequence[str],
        repo: str,
        action: str,
        empty_means_anyone: bool = True,
    ) -> None:
        if not allowed and empty_means_anyone:
            return
        # The lists name Slack users and user groups: no other kind of actor is ever on them.
        groups = (g for g in allowed if g.startswith("S"))
        if user.kind is ActorKind.SLACK and (
            user.name in allowed or any(user.name in self._members_of(g) for g in groups)
        ):
            return
        who = slack_mentions(allowed)
        raise AccessDenied(
            f"You may not {action} {repo}. "
            + (f"Allowed: {who}." if who else "Nobody may, from Slack (no `force` list)."),
            tuple(allowed),
        )

    def _check_unlocked(self, target: Target) -> None:
        lock = self._store.get_lock(target.repo, target.env)
        if lock is not None:
            when = lock.locked_at.strftime("%Y-%m-%d %H:%M UTC")
            why = f": {lock.reason}" if lock.reason else ""
            left = lock.remaining_seconds(datetime.now(UTC))
            until = f" {fmt_remaining(left)}" if left is not None else ""
            raise EnvironmentLocked(
                f"{target.repo} {target.env} is locked by {lock.locked_by} since {when}{until}{why}. "
                f"Unlock with `/deploy unlock {target.repo} to {target.env}`."
            )


def _describe_owner(orphan: Orphan) -> str:
    owner = orphan.owner
    if owner is None:
        known = orphan.deploy.owner_id
        return "no known robot" if known is None else f"unknown robot #{known}"
    return f"robot pid {owner.pid} on {owner.host}"


def _takeover_error(orphan: Orphan, lease: float) -> str:
    """The interrupted deploy's one-line error: which robot stopped, and how it was noticed."""
    owner = orphan.owner
    if owner is None:
        return f"robot stopped during the deploy ({_describe_owner(orphan)} owned it)"
    how = "stopped" if owner.stopped_at is not None else f"sent no heartbeat for over {lease:g} s"
    return f"robot stopped during the deploy ({_describe_owner(orphan)} {how})"


def _nothing_to_roll_back(choice: RollbackChoice) -> str:
    """Why a repo + environment has no rollback target, in one line."""
    where = f"Nothing to roll back to in {choice.repo} {choice.env}"
    current = choice.current
    if current is None:
        return f"{where}: no deploy has succeeded there yet."
    others = sorted(sha[:7] for sha in choice.undone if sha != current.sha)
    if not others:
        return f"{where}: {current.short_sha} is the only SHA that succeeded there."
    return (
        f"{where}: {current.short_sha} is current and every other SHA that succeeded there was "
        f"rolled back from already ({', '.join(others)})."
    )


def _timeout(approvals: ApprovalSettings | None) -> float | None:
    return approvals.timeout if approvals is not None else None


def _deployers_and_force(repo: RepoSettings) -> list[str]:
    """Who may cancel others' deploys, lock and unlock: deployers and the force list (empty: anyone)."""
    return [*repo.deployers, *repo.force] if repo.deployers else []
