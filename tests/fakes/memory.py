"""In-memory fakes of the robot's ports, for the fast unit tier: no sockets, no processes.

``MemoryStore`` (here) keeps SqlStore's semantics (dedupe, FIFO claim, conditional cancels,
final states kept); ``MemoryGitHub`` (memory_github.py) answers from scripted refs, CI states
and head polls and records deployments; ``ScriptedRunner`` (memory_steps.py) plays scripted step
results; the recorders (recorders.py) remember what the services told them. Tests import them
all from here.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bot.errors import UnknownDeploy
from bot.models import (
    ACTIVE_STATES,
    ROBOT,
    Approval,
    ApprovalResult,
    AutoDeploy,
    AutoDeployStatus,
    BranchHead,
    ChangeKind,
    ChangeList,
    CommitInfo,
    Comparison,
    Deploy,
    DeployRequest,
    DeployState,
    DoraHistory,
    HeadClaim,
    HomeViewer,
    Lock,
    LockEvent,
    Orphan,
    ProcessInfo,
    RobotProcess,
    RollbackChoice,
    Source,
)
from tests.fakes.dora_memory import dora_history
from tests.fakes.memory_github import CiAnswer, MemoryDeployment, MemoryGitHub
from tests.fakes.memory_steps import Scripted, ScriptedRunner, blocks, exits, ok
from tests.fakes.recorders import RecordingAnnouncer, RecordingObserver

__all__ = [
    "CiAnswer",
    "MemoryDeployment",
    "MemoryFeed",
    "MemoryGitHub",
    "MemoryStore",
    "RecordingAnnouncer",
    "RecordingObserver",
    "Scripted",
    "ScriptedRunner",
    "blocks",
    "exits",
    "ok",
]

TAKEOVER_LOCKED_BY = "robot"
UPDATABLE_FIELDS = frozenset({"github_deployment_id", "channel", "message_ts", "error"})


def _now() -> datetime:
    return datetime.now(UTC)


# ---- store ---------------------------------------------------------------------------------


class MemoryStore:
    """StorePort (plus the poller's heads and auto-deploy claims) in dicts, behind one lock.

    ``clock`` stands for the time every process reads: tests move it on to expire leases.
    """

    def __init__(self, clock: Callable[[], datetime] = _now) -> None:
        self.clock = clock
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._deploys: dict[int, Deploy] = {}
        self._logs: dict[int, list[str]] = {}
        self._approvals: dict[int, list[Approval]] = {}
        self.lock_events: list[LockEvent] = []
        self._locks: dict[tuple[str, str], Lock] = {}
        self._heads: dict[str, BranchHead] = {}
        self._auto: dict[tuple[str, str, str], AutoDeploy] = {}
        self._auto_order: list[tuple[str, str, str]] = []
        self._poller_lease: tuple[int, datetime] | None = None  # holder, expiry
        self.fail_queue_auto = False  # queue_auto_deploy raises (a crash inside its transaction)
        self._processes: dict[int, RobotProcess] = {}
        self._process_ids = itertools.count(1)
        self._home: dict[str, HomeViewer] = {}
        self._changed = threading.Condition(self._lock)
        self._changes = 0  # what SqlStore's NOTIFY / data_version tell a feed
        self._comparisons: dict[tuple[str, str, str], Comparison] = {}
        self._change_lists: dict[int, ChangeList] = {}

    def _touch(self) -> None:
        """A change a feed reports (called with the lock held)."""
        self._changes += 1
        self._changed.notify_all()

    def watch(self) -> MemoryFeed:
        with self._lock:
            return MemoryFeed(self, self._changes)

    # deploys

    def create_deploy(self, request: DeployRequest, owner: int | None = None) -> tuple[Deploy, bool]:
        with self._lock:
            for deploy in self._deploys.values():
                same = (deploy.repo, deploy.env, deploy.sha) == (request.repo, request.env, request.sha)
                if same and deploy.state in ACTIVE_STATES:
                    return deploy, False
            deploy = Deploy(
                id=next(self._ids),
                repo=request.repo,
                env=request.env,
                ref=request.ref,
                sha=request.sha,
                requested_by=request.requested_by,
                source=request.source,
                state=DeployState.QUEUED,
                force=request.force,
                channel=request.channel,
                message_ts=request.message_ts,
                root_ts=request.message_ts if request.source is not Source.MERGE else None,
                created_at=_now(),
                rollback_of=request.rollback_of,
                owner_id=owner,
            )
            if request.approval_timeout is not None:
                due = self.clock() + timedelta(seconds=request.approval_timeout)
                deploy = replace(deploy, state=DeployState.AWAITING_APPROVAL, recheck_at=due)
            self._deploys[deploy.id] = deploy
            self._touch()
            return deploy, True

    def get_deploy(self, deploy_id: int) -> Deploy | None:
        with self._lock:
            return self._deploys.get(deploy_id)

    def claim_next(
        self, only_id: int | None = None, owner: int | None = None, lease: float | None = None
    ) -> Deploy | None:
        with self._lock:
            for deploy in sorted(self._deploys.values(), key=lambda d: d.id):
                if only_id is not None and deploy.id != only_id:
                    continue
                theirs = deploy.owner_id not in (None, owner)
                if theirs and lease is not None and self._owner_alive(deploy, lease):
                    continue
                if self._claimable(deploy):
                    running = replace(
                        deploy, state=DeployState.RUNNING, started_at=_now(), owner_id=owner, step_pgid=None
                    )
                    return self._put(running)
            return None

    def _claimable(self, deploy: Deploy) -> bool:
        """Queued, oldest queued of its repo+env, nothing running or waiting there, not locked."""
        if deploy.state is not DeployState.QUEUED or self._holding(deploy.repo, deploy.env) is not None:
            return False
        for other in self._deploys.values():
            if (other.repo, other.env) != (deploy.repo, deploy.env):
                continue
            if other.state in (DeployState.RUNNING, DeployState.WAITING):
                return False
            if other.state is DeployState.QUEUED and other.id < deploy.id:
                return False
        return True

    def update_deploy(self, deploy_id: int, **fields: object) -> Deploy:
        unknown = sorted(set(fields) - UPDATABLE_FIELDS)
        if unknown:
            raise ValueError(f"update_deploy cannot set {', '.join(unknown)}")
        with self._lock:
            deploy = replace(self._existing(deploy_id), **fields)  # type: ignore[arg-type]
            if "message_ts" in fields and deploy.source is not Source.MERGE:
                # As SqlStore does: a top-level root is its own thread.
                deploy = replace(deploy, root_ts=deploy.message_ts, root_claimed_at=None)
            return self._put(deploy)

    def finish_deploy(self, deploy_id: int, state: DeployState, error: str | None) -> Deploy:
        if not state.is_final:
            raise ValueError(f"finish_deploy needs a final state, not {state.value}")
        with self._lock:
            deploy = self._existing(deploy_id)
            if deploy.state.is_final:
                return deploy
            self._touch()
            return self._put(
                replace(
                    deploy,
                    state=state,
                    finished_at=_now(),
                    error=deploy.error if error is None else error,
                    waiting_for=None,
                    recheck_at=None,
                )
            )

    def cancel_queued(self, deploy_id: int) -> Deploy | None:
        with self._lock:
            deploy = self._deploys.get(deploy_id)
            if deploy is None or deploy.state is not DeployState.QUEUED:
                return None
            self._touch()
            return self._put(replace(deploy, state=DeployState.CANCELLED, finished_at=_now()))

    # the Slack root

    def claim_root(self, deploy_id: int, stale_after: float) -> str | None:
        with self._lock:
            deploy = self._existing(deploy_id)
            now = _now()
            claimed = deploy.root_claimed_at
            if deploy.root_ts is not None:
                return None
            if claimed is not None:
                if (now - claimed).total_seconds() < stale_after:
                    return None
                now = max(now, claimed + timedelta(microseconds=1))
            self._put(replace(deploy, root_claimed_at=now))
            return now.isoformat()

    def record_root(self, deploy_id: int, token: str, channel: str, ts: str) -> bool:
        with self._lock:
            deploy = self._existing(deploy_id)
            if deploy.root_claimed_at is None or deploy.root_claimed_at.isoformat() != token:
                return False
            thread = deploy.message_ts or ts
            self._put(replace(deploy, root_claimed_at=None, root_ts=ts, channel=channel, message_ts=thread))
            return True

    # waiting for CI

    def park(self, deploy_id: int, owner: int | None, note: str, recheck_in: float) -> Deploy | None:
        with self._lock:
            deploy = self._deploys.get(deploy_id)
            if (
                deploy is None
                or deploy.state is not DeployState.RUNNING
                or deploy.owner_id != owner
                or deploy.cancel_requested
            ):
                return None
            self._touch()
            return self._put(
                replace(
                    deploy,
                    state=DeployState.WAITING,
                    owner_id=None,
                    step_pgid=None,
                    waiting_for=note,
                    recheck_at=_now() + timedelta(seconds=recheck_in),
                )
            )

    def claim_recheck(self, recheck_in: float, only_id: int | None = None) -> Deploy | None:
        with self._lock:
            now = _now()
            for deploy in sorted(self._deploys.values(), key=lambda d: d.id):
                if only_id is not None and deploy.id != only_id:
                    continue
                due = deploy.recheck_at is not None and deploy.recheck_at <= now
                if deploy.state is DeployState.WAITING and due:
                    return self._put(replace(deploy, recheck_at=now + timedelta(seconds=recheck_in)))
            return None

    def next_recheck(self) -> datetime | None:
        with self._lock:
            due = [
                d.recheck_at
                for d in self._deploys.values()
                if d.state in (DeployState.WAITING, DeployState.AWAITING_APPROVAL)
                and d.recheck_at is not None
            ]
            return min(due) if due else None

    def update_waiting(self, deploy_id: int, note: str) -> Deploy | None:
        with self._lock:
            deploy = self._deploys.get(deploy_id)
            if deploy is None or deploy.state is not DeployState.WAITING:
                return None
            return self._put(replace(deploy, waiting_for=note))

    def resume(self, deploy_id: int, owner: int | None) -> Deploy | None:
        with self._lock:
            deploy = self._deploys.get(deploy_id)
            if deploy is None or deploy.state is not DeployState.WAITING:
                return None
            return self._put(
                replace(
                    deploy,
                    state=DeployState.RUNNING,
                    owner_id=owner,
                    step_pgid=None,
                    waiting_for=None,
                    recheck_at=None,
                )
            )

    def finish_waiting(self, deploy_id: int, state: DeployState, error: str) -> Deploy | None:
        if not state.is_final:
            raise ValueError(f"finish_waiting needs a final state, not {state.value}")
        with self._lock:
            deploy = self._deploys.get(deploy_id)
            if deploy is None or deploy.state is not DeployState.WAITING:
                return None
            self._touch()
            return self._put(
                replace(
                    deploy, state=state, finished_at=_now(), error=error, waiting_for=None, recheck_at=None
                )
            )

    # approvals

    def approve(self, deploy_id: int, approver: str, required: int) -> ApprovalResult:
        with self._lock:
            deploy = self._existing(deploy_id)
            given = self._approvals.setdefault(deploy_id, [])
            if deploy.state is not DeployState.AWAITING_APPROVAL:
                return ApprovalResult(deploy, tuple(given), False, False)
            recorded = all(a.approver != approver for a in given)
            if recorded:
                given.append(Approval(deploy_id, approver, self.clock()))
            queued = len(given) >= required
            if queued:
                deploy = self._put(replace(deploy, state=DeployState.QUEUED, recheck_at=None))
                self._touch()
            return ApprovalResult(deploy, tuple(given), recorded, queued)

    def finish_approval(self, deploy_id: int, state: DeployState, error: str) -> Deploy | None:
        if not state.is_final:
            raise ValueError(f"finish_approval needs a final state, not {state.value}")
        with self._lock:
            deploy = self._deploys.get(deploy_id)
            if deploy is None or deploy.state is not DeployState.AWAITING_APPROVAL:
                return None
            self._touch()
            return self._put(replace(deploy, state=state, finished_at=_now(), error=error, recheck_at=None))

    def expire_approval(self, error: str, only_id: int | None = None) -> Deploy | None:
        with self._lock:
            now = self.clock()
            for deploy in sorted(self._deploys.values(), key=lambda d: d.id):
                if only_id is not None and deploy.id != only_id:
                    continue
                due = deploy.recheck_at is not None and deploy.recheck_at <= now
                if deploy.state is DeployState.AWAITING_APPROVAL and due:
                    self._touch()
                    expired = replace(
                        deploy, state=DeployState.EXPIRED, finished_at=now, error=error, recheck_at=None
                    )
                    return self._put(expired)
            return None

    def list_approvals(self, deploy_ids: Sequence[int]) -> dict[int, tuple[Approval, ...]]:
        with self._lock:
            return {i: tuple(self._approvals[i]) for i in deploy_ids if self._approvals.get(i)}

    def request_cancel(self, deploy_id: int) -> Deploy | None:
        with self._lock:
            deploy = self._deploys.get(deploy_id)
            if deploy is None or deploy.state is not DeployState.RUNNING:
                return None
            return self._put(replace(deploy, cancel_requested=True))

    def record_step(self, deploy_id: int, pgid: int | None) -> bool:
        with self._lock:
            deploy = self._deploys.get(deploy_id)
            if deploy is None or deploy.state is not DeployState.RUNNING:
                return False
            self._put(replace(deploy, step_pgid=pgid))
            return True

    def orphaned_deploys(self, lease: float, exclude: int | None = None) -> list[Orphan]:
        with self._lock:
            return [
                Orphan(d, self._processes.get(d.owner_id) if d.owner_id is not None else None)
                for d in sorted(self._deploys.values(), key=lambda d: d.id)
                if d.state is DeployState.RUNNING
                and not self._owner_alive(d, lease)
                and (exclude is None or d.owner_id != exclude)
            ]

    def take_over(
        self, deploy_id: int, lease: float, error: str, lock_reason: str | None = None
    ) -> Deploy | None:
        with self._lock:
            deploy = self._deploys.get(deploy_id)
            if deploy is None or deploy.state is not DeployState.RUNNING or self._owner_alive(deploy, lease):
                return None
            taken = self._put(replace(deploy, state=DeployState.INTERRUPTED, finished_at=_now(), error=error))
            self._touch()
            if lock_reason is not None:
                self._drop_expired(deploy.repo, deploy.env)
            if lock_reason is not None and (deploy.repo, deploy.env) not in self._locks:
                self._locks[(deploy.repo, deploy.env)] = Lock(
                    deploy.repo, deploy.env, TAKEOVER_LOCKED_BY, lock_reason, _now()
                )
            return taken

    def _owner_alive(self, deploy: Deploy, lease: float) -> bool:
        owner = self._processes.get(deploy.owner_id) if deploy.owner_id is not None else None
        if owner is None or owner.stopped_at is not None:
            return False
        return owner.heartbeat_at >= self.clock() - timedelta(seconds=lease)

    # processes

    def register_process(self, info: ProcessInfo) -> RobotProcess:
        with self._lock:
            now = self.clock()
            process = RobotProcess(
                next(self._process_ids), info.host, info.pid, info.boot_id, info.kind, now, now
            )
            self._processes[process.id] = process
            return process

    def heartbeat(self, process_id: int) -> None:
        with self._lock:
            process = self._processes.get(process_id)
            if process is not None:
                self._processes[process_id] = replace(process, heartbeat_at=self.clock())

    def stop_process(self, process_id: int) -> None:
        with self._lock:
            process = self._processes.get(process_id)
            if process is not None and process.stopped_at is None:
                self._processes[process_id] = replace(process, stopped_at=self.clock())

    def get_process(self, process_id: int) -> RobotProcess | None:
        with self._lock:
            return self._processes.get(process_id)

    def prune_processes(self, silent_for: float) -> int:
        with self._lock:
            cutoff = self.clock() - timedelta(seconds=silent_for)
            owners = {d.owner_id for d in self._deploys.values() if not d.state.is_final}
            gone = [p.id for p in self._processes.values() if p.heartbeat_at < cutoff and p.id not in owners]
            for process_id in gone:
                del self._processes[process_id]
            return len(gone)

    def list_deploys(
        self,
        repo: str | None = None,
        env: str | None = None,
        states: Sequence[DeployState] | None = None,
        limit: int = 50,
        since: datetime | None = None,
    ) -> list[Deploy]:
        if limit <= 0:
            return []
        with self._lock:
            found = [
                d
                for d in sorted(self._deploys.values(), key=lambda d: d.id, reverse=True)
                if (repo is None or d.repo == repo)
                and (env is None or d.env == env)
                and (states is None or d.state in states)
                and (since is None or (d.created_at is not None and d.created_at >= since))
            ]
        return found[:limit]

    def last_succeeded(self, repo: str, env: str) -> Deploy | None:
        found = self.list_deploys(repo, env, [DeployState.SUCCEEDED], limit=1)
        return found[0] if found else None

    def rollback_choice(self, repo: str, env: str) -> RollbackChoice:
        with self._lock:
            here = [d for d in self._deploys.values() if (d.repo, d.env) == (repo, env)]
            succeeded = sorted(
                (d for d in here if d.state is DeployState.SUCCEEDED), key=lambda d: d.id, reverse=True
            )
            if not succeeded:
                return RollbackChoice(repo, env, None, None)
            undone = frozenset(
                self._deploys[d.rollback_of].sha
                for d in succeeded
                if d.rollback_of is not None
                and d.rollback_of in self._deploys
                and (self._deploys[d.rollback_of].repo, self._deploys[d.rollback_of].env) == (repo, env)
            )
            current = succeeded[0]
            target = next((d for d in succeeded if d.sha != current.sha and d.sha not in undone), None)
            return RollbackChoice(repo, env, current, target, undone)

    # logs

    def append_log(self, deploy_id: int, lines: Sequence[str]) -> None:
        if not lines:
            return
        with self._lock:
            self._existing(deploy_id)
            self._logs.setdefault(deploy_id, []).append("\n".join(lines).replace("\x00", "\ufffd"))

    def read_log(self, deploy_id: int) -> str:
        with self._lock:
            return "\n".join(self._logs.get(deploy_id, []))

    def prune_logs(self, finished_before: datetime) -> int:
        with self._lock:
            ended = [
                d.id
                for d in self._deploys.values()
                if d.state.is_final and d.finished_at is not None and d.finished_at < finished_before
            ]
            return sum(self._logs.pop(i, None) is not None for i in ended)

    # locks

    def set_lock(
        self, repo: str, env: str, locked_by: str, reason: str, duration: timedelta | None = None
    ) -> Lock:
        with self._lock:
            self._drop_expired(repo, env)
            now = self.clock()
            lock = Lock(repo, env, locked_by, reason, now, None if duration is None else now + duration)
            self._locks[(repo, env)] = lock
            self.lock_events.append(LockEvent(repo, env, "locked", locked_by, reason, lock.locked_at))
            return lock

    def get_lock(self, repo: str, env: str) -> Lock | None:
        with self._lock:
            return self._holding(repo, env)

    def list_locks(self, repo: str | None = None) -> list[Lock]:
        with self._lock:
            return [
                lock
                for key, lock in sorted(self._locks.items())
                if (repo is None or key[0] == repo) and not self._expired(lock)
            ]

    def remove_lock(self, repo: str, env: str, unlocked_by: str) -> Lock | None:
        with self._lock:
            if self._holding(repo, env) is None:
                return None
            removed = self._locks.pop((repo, env))
            self.lock_events.append(LockEvent(repo, env, "unlocked", unlocked_by, removed.reason, _now()))
            self._touch()
            return removed

    def release_expired_locks(self) -> list[Lock]:
        with self._lock:
            gone = [lock for _, lock in sorted(self._locks.items()) if self._expired(lock)]
            for lock in gone:
                del self._locks[(lock.repo, lock.env)]
                self.lock_events.append(
                    LockEvent(lock.repo, lock.env, "unlocked", str(ROBOT), lock.reason, _now())
                )
            if gone:
                self._touch()
            return gone

    def next_lock_expiry(self) -> datetime | None:
        with self._lock:
            return min((lock.expires_at for lock in self._locks.values() if lock.expires_at), default=None)

    def _expired(self, lock: Lock) -> bool:
        return lock.expires_at is not None and lock.expires_at <= self.clock()

    def _holding(self, repo: str, env: str) -> Lock | None:
        lock = self._locks.get((repo, env))
        return None if lock is None or self._expired(lock) else lock

    def _drop_expired(self, repo: str, env: str) -> None:
        """An expired lock makes way for a new one; the history records the robot's unlock."""
        lock = self._locks.get((repo, env))
        if lock is not None and self._expired(lock):
            del self._locks[(repo, env)]
            self.lock_events.append(LockEvent(repo, env, "unlocked", str(ROBOT), lock.reason, _now()))

    def lock_history(self, repo: str, env: str, limit: int = 20) -> list[LockEvent]:
        with self._lock:
            return [e for e in reversed(self.lock_events) if (e.repo, e.env) == (repo, env)][:limit]

    # heads, auto-deploys and the poller lease (the poller's)

    def get_head(self, repo: str) -> BranchHead | None:
        with self._lock:
            return self._heads.get(repo)

    def set_head(self, head: BranchHead) -> None:
        with self._lock:
            self._heads[head.repo] = head

    def claim_head(
        self,
        previous: str | None,
        head: BranchHead,
        auto_deploy: AutoDeploy | None = None,
        *,
        owed: bool = False,
        by: int | None = None,
    ) -> HeadClaim:
        with self._lock:
            stored = self._heads.get(head.repo)
            if (stored.sha if stored else None) != previous:
                return HeadClaim(False)
            if stored is not None and previous == head.sha:
                head = replace(head, owed_from=stored.owed_from, owed_by=stored.owed_by)
            else:
                head = replace(head, owed_from=previous if owed else None, owed_by=by if owed else None)
            self._heads[head.repo] = head
            if auto_deploy is None or previous == head.sha:
                return HeadClaim(True)
            return HeadClaim(True, self._claim_auto(auto_deploy))

    def release_head(self, claimed: BranchHead, previous: BranchHead, auto_deploy: AutoDeploy | None) -> bool:
        with self._lock:
            stored = self._heads.get(claimed.repo)
            if stored is None or stored.sha != claimed.sha:
                return False
            self._heads[claimed.repo] = replace(previous, owed_from=None, owed_by=None)
            if auto_deploy is not None:
                key = (auto_deploy.repo, auto_deploy.env, auto_deploy.sha)
                found = self._auto.get(key)
                if found is not None and found.status is AutoDeployStatus.PENDING:
                    del self._auto[key]
            return True

    def announcement_posted(self, repo: str, sha: str) -> bool:
        with self._lock:
            stored = self._heads.get(repo)
            if stored is None or stored.sha != sha or stored.owed_from is None:
                return False
            self._heads[repo] = replace(stored, owed_from=None, owed_by=None)
            return True

    def reclaim_announcement(self, repo: str, sha: str, by: int | None, lease: float) -> str | None:
        with self._lock:
            stored = self._heads.get(repo)
            if stored is None or stored.sha != sha or stored.owed_from is None:
                return None
            poster = self._processes.get(stored.owed_by) if stored.owed_by is not None else None
            alive = poster is not None and poster.heartbeat_at >= self.clock() - timedelta(seconds=lease)
            if stored.owed_by is not None and alive and stored.owed_by != by:
                return None
            self._heads[repo] = replace(stored, owed_by=by)
            return stored.owed_from

    def mark_auto_deployed(self, repo: str, env: str, sha: str) -> bool:
        claim = AutoDeploy(repo, env, sha, AutoDeployStatus.PENDING, "merge", self.clock())
        with self._lock:
            return self._claim_auto(claim) is not None

    def _claim_auto(self, claim: AutoDeploy) -> AutoDeploy | None:
        key = (claim.repo, claim.env, claim.sha)
        if key in self._auto:
            return None
        for other_key, other in list(self._auto.items()):
            if other_key[:2] == key[:2] and other.status is AutoDeployStatus.PENDING:
                note = f"superseded by {claim.sha[:7]}"
                self._auto[other_key] = replace(other, status=AutoDeployStatus.EXPIRED, note=note)
        self._auto[key] = replace(claim, status=AutoDeployStatus.PENDING, deploy_id=None, note=None)
        self._auto_order.append(key)
        return self._auto[key]

    def get_auto_deploy(self, repo: str, env: str, sha: str) -> AutoDeploy | None:
        with self._lock:
            return self._auto.get((repo, env, sha))

    def pending_auto_deploys(self) -> list[AutoDeploy]:
        with self._lock:
            found = (self._auto.get(key) for key in self._auto_order)
            return [a for a in found if a is not None and a.status is AutoDeployStatus.PENDING]

    def update_auto_deploy(
        self,
        claim: AutoDeploy,
        *,
        thread: tuple[str, str] | None = None,
        note: str | None = None,
        expire: bool = False,
    ) -> bool:
        key = (claim.repo, claim.env, claim.sha)
        with self._lock:
            found = self._auto.get(key)
            if found is None or found.status is not AutoDeployStatus.PENDING:
                return False
            if thread is None and note is None and not expire:
                return False
            if note is not None and not expire and found.note == note:
                return False
            if thread is not None:
                found = replace(found, channel=thread[0], message_ts=thread[1])
            if note is not None:
                found = replace(found, note=note)
            if expire:
                found = replace(found, status=AutoDeployStatus.EXPIRED)
            self._auto[key] = found
            return True

    def queue_auto_deploy(self, request: DeployRequest) -> tuple[Deploy, bool] | None:
        key = (request.repo, request.env, request.sha)
        with self._lock:
            found = self._auto.get(key)
            if found is None or found.status is not AutoDeployStatus.PENDING:
                return None
            if self.fail_queue_auto:
                raise RuntimeError("the store failed between claim and queue")  # rolled back: nothing
            deploy, created = self.create_deploy(request)
            self._auto[key] = replace(found, status=AutoDeployStatus.QUEUED, deploy_id=deploy.id, note=None)
            return deploy, created

    # change lists

    def get_comparison(self, repo: str, base: str, head: str) -> Comparison | None:
        with self._lock:
            return self._comparisons.get((repo, base, head))

    def put_comparison(self, repo: str, base: str, head: str, comparison: Comparison) -> None:
        with self._lock:
            self._comparisons.setdefault((repo, base, head), comparison)

    def record_changes(self, deploy_id: int, changes: ChangeList) -> None:
        with self._lock:
            deploy = self._existing(deploy_id)
            # As SqlStore keeps them: commits without parents, cut to the columns' sizes.
            commits = tuple(
                CommitInfo(c.sha, c.title[:1000], (), c.author[:255], c.committed_at) for c in changes.commits
            )
            self._change_lists[deploy_id] = replace(changes, head_sha=deploy.sha, commits=commits)

    def get_changes(self, deploy_id: int) -> ChangeList | None:
        with self._lock:
            return self._change_lists.get(deploy_id)

    def dora_history(self, targets: Sequence[tuple[str, str]], until: datetime, days: int) -> DoraHistory:
        with self._lock:
            commits = {i: changes.commits for i, changes in self._change_lists.items()}
            return dora_history(list(self._deploys.values()), commits, targets, until, days)

    def add_past_deploy(self, deploy: Deploy, commits: Sequence[CommitInfo] = ()) -> None:
        """Put a finished deploy of a seeded history in as it stands (the fake's `INSERT`)."""
        with self._lock:
            self._deploys[deploy.id] = deploy
            self._ids = itertools.count(max(self._deploys) + 1)
            if commits:
                self._change_lists[deploy.id] = ChangeList(
                    ChangeKind.AHEAD, deploy.sha, ahead_by=len(commits), commits=tuple(commits)
                )

    def lead_poller(self, process_id: int, lease: float) -> bool:
        with self._lock:
            now = self.clock()
            holder = self._poller_lease
            if holder is None or holder[0] == process_id or holder[1] < now:
                self._poller_lease = (process_id, now + timedelta(seconds=lease))
            return self._poller_lease is not None and self._poller_lease[0] == process_id

    def resign_poller(self, process_id: int) -> None:
        with self._lock:
            if self._poller_lease is not None and self._poller_lease[0] == process_id:
                self._poller_lease = None

    # App Home viewers

    def open_home(self, user: str) -> HomeViewer:
        with self._lock:
            known = self._home.get(user)
            viewer = HomeViewer(user, _now(), known.repo_filter if known else None)
            self._home[user] = viewer
            return viewer

    def set_home_filter(self, user: str, repo: str | None) -> HomeViewer:
        with self._lock:
            viewer = HomeViewer(user, _now(), repo)
            self._home[user] = viewer
            return viewer

    def home_viewers(self, opened_since: datetime) -> list[HomeViewer]:
        with self._lock:
            found = [v for v in self._home.values() if v.opened_at >= opened_since]
        return sorted(found, key=lambda v: v.opened_at, reverse=True)

    # helpers

    def _existing(self, deploy_id: int) -> Deploy:
        deploy = self._deploys.get(deploy_id)
        if deploy is None:
            raise UnknownDeploy(f"There is no deploy #{deploy_id}.")
        return deploy

    def _put(self, deploy: Deploy) -> Deploy:
        self._deploys[deploy.id] = deploy
        return deploy


class MemoryFeed:
    """A ChangeFeed on a MemoryStore: woken by the store's changes, as SqlStore's feeds are."""

    def __init__(self, store: MemoryStore, seen: int) -> None:
        self._store = store
        self._seen = seen
        self.closed = False

    def wait(self, timeout: float) -> bool:
        with self._store._changed:
            if self._store._changes == self._seen and not self.closed:
                self._store._changed.wait(timeout)
            changed = self._store._changes != self._seen
            self._seen = self._store._changes
            return changed

    def close(self) -> None:
        self.closed = True
