"""SqlStore: the StorePort on SQLAlchemy Core, correct under threads and several processes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Insert,
    Row,
    String,
    Table,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    null,
    select,
    text,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError

from bot.errors import StoreError, UnknownDeploy
from bot.models import (
    ACTIVE_STATES,
    FINAL_STATES,
    ROBOT,
    Approval,
    ApprovalResult,
    AutoDeploy,
    AutoDeployStatus,
    BranchHead,
    Deploy,
    DeployRequest,
    DeployState,
    HeadClaim,
    HomeViewer,
    Lock,
    LockEvent,
    Orphan,
    ProcessInfo,
    ProcessKind,
    RobotProcess,
    RollbackChoice,
    Source,
)
from bot.ports import ChangeFeed
from bot.store import migrate
from bot.store.changes import ChangeListRows
from bot.store.engine import IMMEDIATE
from bot.store.feed import WAKE_CHANNEL, open_feed
from bot.store.migrate import SchemaState
from bot.store.schema import (
    approvals,
    auto_deploys,
    deploy_logs,
    deploys,
    heads,
    home_views,
    lock_events,
    locks,
    poller_lease,
    processes,
)

log = logging.getLogger(__name__)

TAKEOVER_LOCKED_BY = "robot"
"""Who an automatic lock names: the robot itself, after taking over a deploy it cannot check."""
POLLER_LEASE = "merge-poller"
"""The ``poller_lease`` row (SQLite) whose holder polls merges."""
POLLER_LOCK_KEY = 0x6D65726765  # "merge": PostgreSQL's advisory lock key for the merge poller
UPDATABLE_FIELDS = frozenset({"github_deployment_id", "channel", "message_ts", "error"})
# Bounds on retries after a lost race with another thread or process.
MAX_CREATE_ATTEMPTS = 5
MAX_CLAIM_ROUNDS = 3
CLAIM_CANDIDATES = 20
MAX_APPEND_ATTEMPTS = 5
PRUNE_BATCH = 500  # deploys whose logs one prune transaction deletes

_ACTIVE = [s.value for s in ACTIVE_STATES]
_QUEUED = DeployState.QUEUED.value
_WAITING = DeployState.WAITING.value
_RUNNING = DeployState.RUNNING.value
_AWAITING = DeployState.AWAITING_APPROVAL.value
_HOLDING = [_WAITING, _RUNNING]  # a deploy in these states holds its repo + env
_RECHECKED = [_WAITING, _AWAITING]  # due at `recheck_at`: a CI re-check, an approval's expiry

# The first key of the two-key advisory locks that serialize queue writes per repo + env
# (two-key locks never collide with one-key ones, such as a poller's).
_QUEUE_LOCK_CLASS = 0x0D3710


@contextmanager
def _unavailable_as_store_error() -> Iterator[None]:
    """A database that is locked past the busy timeout, full or gone is a StoreError."""
    try:
        yield
    except OperationalError as exc:
        reason = (
            str(exc.orig or exc).strip().splitlines()[0] if str(exc.orig or exc).strip() else "unavailable"
        )
        raise StoreError(f"the database is unavailable: {reason}") from exc


def _now() -> datetime:
    return datetime.now(UTC)


def _claimable(unexpired: ColumnElement[bool]) -> ColumnElement[bool]:
    """Queued, oldest queued of its repo+env, nothing running or waiting there, and not locked
    (``unexpired``: which lock rows still hold)."""
    older = deploys.alias("older")
    running = deploys.alias("running")
    return (
        (deploys.c.state == _QUEUED)
        & ~exists().where(
            older.c.repo == deploys.c.repo,
            older.c.env == deploys.c.env,
            older.c.state == _QUEUED,
            older.c.id < deploys.c.id,
        )
        & ~exists().where(
            running.c.repo == deploys.c.repo,
            running.c.env == deploys.c.env,
            running.c.state.in_(_HOLDING),
        )
        & ~exists().where(locks.c.repo == deploys.c.repo, locks.c.env == deploys.c.env, unexpired)
    )


def _owner_alive(lease: float, database_clock: bool) -> ColumnElement[bool]:
    """The deploy's owner is registered, not stopped, and beat within the last ``lease`` seconds.

    ``database_clock``: heartbeats were stamped by the database (PostgreSQL), so the cutoff is the
    database's time too; robots on hosts whose clocks drift never judge each other by them.
    """
    return exists().where(
        processes.c.id == deploys.c.owner_id,
        processes.c.stopped_at.is_(None),
        processes.c.heartbeat_at >= _heartbeat_cutoff(lease, database_clock),
    )


def _heartbeat_cutoff(seconds: float, database_clock: bool) -> object:
    """``seconds`` ago, on the clock that stamped the heartbeats (the database's on PostgreSQL)."""
    if database_clock:
        return func.now() - func.make_interval(0, 0, 0, 0, 0, 0, seconds)
    return _now() - timedelta(seconds=seconds)


def _process(row: Row[tuple[object, ...]]) -> RobotProcess:
    m = row._mapping
    return RobotProcess(
        id=m["id"],
        host=m["host"],
        pid=m["pid"],
        boot_id=m["boot_id"],
        kind=ProcessKind(m["kind"]),
        started_at=m["started_at"],
        heartbeat_at=m["heartbeat_at"],
        stopped_at=m["stopped_at"],
    )


def _deploy(row: Row[tuple[object, ...]]) -> Deploy:
    m = row._mapping
    return Deploy(
        id=m["id"],
        repo=m["repo"],
        env=m["env"],
        ref=m["ref"],
        sha=m["sha"],
        requested_by=m["requested_by"],
        source=Source(m["source"]),
        state=DeployState(m["state"]),
        force=bool(m["force"]),
        github_deployment_id=m["github_deployment_id"],
        channel=m["channel"],
        message_ts=m["message_ts"],
        created_at=m["created_at"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        error=m["error"],
        cancel_requested=bool(m["cancel_requested"]),
        owner_id=m["owner_id"],
        step_pgid=m["step_pgid"],
        recheck_at=m["recheck_at"],
        root_ts=m["root_ts"],
        root_claimed_at=m["root_claimed_at"],
        waiting_for=m["waiting_for"],
        rollback_of=m["rollback_of"],
    )


def _lock_event(lock: Row[tuple[object, ...]], action: str, actor: str) -> Insert:
    m = lock._mapping
    return insert(lock_events).values(
        repo=m["repo"], env=m["env"], action=action, actor=actor, reason=m["reason"], at=_now()
    )


def _lock(row: Row[tuple[object, ...]]) -> Lock:
    m = row._mapping
    return Lock(
        repo=m["repo"],
        env=m["env"],
        locked_by=m["locked_by"],
        reason=m["reason"],
        locked_at=m["locked_at"],
        expires_at=m["expires_at"],
    )


class SqlStore(ChangeListRows):
    """The source of truth for deploys, the queue, locks, logs and last-seen heads."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._leader: Connection | None = None  # PostgreSQL: the connection holding the poller lock
        self._leader_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, *, upgrade: bool = True) -> SqlStore:
        """Open the database at ``url`` and bring its schema to this code's head revision.

        ``upgrade=False`` leaves the schema as it is, for commands that must not write one:
        they check ``schema_state()`` before they read.
        """
        return cls(migrate.open_engine(url, upgrade=upgrade))

    def schema_state(self) -> SchemaState:
        """Where the database's schema stands against this code's revisions."""
        return migrate.read_state(self._engine)

    def upgrade_schema(self) -> tuple[SchemaState, SchemaState]:
        """Bring the schema to this code's head: the state before and after."""
        return migrate.upgrade_schema(self._engine)

    def close(self) -> None:
        """Close every pooled connection (and give up polling merges, if this store led)."""
        self._drop_leader_connection(unlock=True)
        self._engine.dispose()

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with _unavailable_as_store_error(), self._engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with _unavailable_as_store_error(), self._engine.connect() as conn:
            conn.execution_options(**{IMMEDIATE: True})
            with conn.begin():
                yield conn

    def _upsert(
        self, table: Table, keys: Sequence[str], values: dict[str, object], *, keep_existing: bool = False
    ) -> Insert:
        """INSERT … ON CONFLICT (keys) DO UPDATE (or DO NOTHING), under one name in both dialects."""
        changed = {k: v for k, v in values.items() if k not in keys}
        if self._engine.dialect.name == "sqlite":
            lite = sqlite.insert(table).values(**values)
            if keep_existing:
                return lite.on_conflict_do_nothing(index_elements=list(keys))
            return lite.on_conflict_do_update(index_elements=list(keys), set_=changed)
        from sqlalchemy.dialects import postgresql  # only PostgreSQL stores pay for importing it

        pg = postgresql.insert(table).values(**values)
        if keep_existing:
            return pg.on_conflict_do_nothing(index_elements=list(keys))
        return pg.on_conflict_do_update(index_elements=list(keys), set_=changed)

    @property
    def _postgresql(self) -> bool:
        return self._engine.dialect.name == "postgresql"

    def _serialize(self, conn: Connection, repo: str, env: str) -> None:
        """Queue writes of one repo + env take turns until the transaction ends.

        SQLite's BEGIN IMMEDIATE already serializes every writer; on PostgreSQL the partial
        unique indexes do not cover `waiting`, so this lock does what they cannot.
        """
        if self._postgresql:
            key = func.hashtext(literal(f"{repo}\n{env}"))
            conn.execute(select(func.pg_advisory_xact_lock(literal(_QUEUE_LOCK_CLASS), key)))

    def _wake(self, conn: Connection) -> None:
        """Tell every process's feed, at commit, that the queue changed (PostgreSQL NOTIFY)."""
        if self._postgresql:
            conn.execute(select(func.pg_notify(WAKE_CHANNEL, "")))

    def watch(self) -> ChangeFeed:
        """A feed that says when another process changed the queue; close it when done."""
        return open_feed(self._engine)

    # deploys

    def create_deploy(self, request: DeployRequest, owner: int | None = None) -> tuple[Deploy, bool]:
        """Queue a deploy; if the same repo+env+sha is queued or running, return it and False.

        ``owner``: the process that will run it (a terminal's deploy), recorded while it is queued.
        """
        same_active = select(deploys).where(
            deploys.c.repo == request.repo,
            deploys.c.env == request.env,
            deploys.c.sha == request.sha,
            deploys.c.state.in_(_ACTIVE),
        )
        values = {**_new_deploy(request), "owner_id": owner}
        for _ in range(MAX_CREATE_ATTEMPTS):
            try:
                with self._write() as conn:
                    self._serialize(conn, request.repo, request.env)
                    existing = conn.execute(same_active).first()
                    if existing is not None:
                        return _deploy(existing), False
                    row = conn.execute(insert(deploys).values(values).returning(deploys)).one()
                    self._wake(conn)
                    return _deploy(row), True
            except IntegrityError:
                # Another process inserted the same request between our read and our insert
                # (PostgreSQL); its row is committed now, the next round returns it.
                continue
        raise RuntimeError(f"could not queue {request.repo}@{request.sha} → {request.env}")

    def get_deploy(self, deploy_id: int) -> Deploy | None:
        """The deploy with that id, or None."""
        with self._read() as conn:
            row = conn.execute(select(deploys).where(deploys.c.id == deploy_id)).first()
        return None if row is None else _deploy(row)

    def claim_next(
        self, only_id: int | None = None, owner: int | None = None, lease: float | None = None
    ) -> Deploy | None:
        """Atomically move the oldest claimable queued deploy to running (one per repo+env).

        ``owner`` (the claiming process) is recorded in the same write. With ``lease``, a deploy
        queued for another process (a terminal's) is that process's while its lease holds: the
        terminal shows its steps and its Ctrl-C cancels them; if it dies, anyone may run it.
        """
        claimable = _claimable(self._unexpired())
        if lease is not None:
            mine = deploys.c.owner_id.is_(None) if owner is None else deploys.c.owner_id == owner
            claimable = claimable & (
                deploys.c.owner_id.is_(None) | mine | ~_owner_alive(lease, self._database_clock)
            )
        candidates = select(deploys.c.id, deploys.c.repo, deploys.c.env).where(claimable)
        candidates = candidates.order_by(deploys.c.id)
        if only_id is not None:
            candidates = candidates.where(deploys.c.id == only_id)
        candidates = candidates.limit(CLAIM_CANDIDATES)
        for _ in range(MAX_CLAIM_ROUNDS):
            with self._read() as conn:
                found = [(r.id, r.repo, r.env) for r in conn.execute(candidates)]
            if not found:
                return None
            for deploy_id, repo, env in found:
                claim = (
                    update(deploys)
                    .where(deploys.c.id == deploy_id, claimable)
                    .values(state=_RUNNING, started_at=_now(), owner_id=owner, step_pgid=None)
                    .returning(deploys)
                )
                try:
                    with self._write() as conn:
                        self._serialize(conn, repo, env)
                        row = conn.execute(claim).first()
                except IntegrityError:
                    # Another process claimed this repo+env first; the unique index said no.
                    continue
                if row is not None:
                    return _deploy(row)
        return None

    def update_deploy(self, deploy_id: int, **fields: object) -> Deploy:
        """Set github_deployment_id, channel, message_ts or error."""
        unknown = sorted(set(fields) - UPDATABLE_FIELDS)
        if unknown:
            raise ValueError(f"update_deploy cannot set {', '.join(unknown)}")
        for name, value in fields.items():
            wanted: type = int if name == "github_deployment_id" else str
            if value is not None and (not isinstance(value, wanted) or isinstance(value, bool)):
                raise ValueError(f"update_deploy: {name} must be {wanted.__name__} or None")
        if not fields:
            found = self.get_deploy(deploy_id)
            if found is None:
                raise UnknownDeploy(f"There is no deploy #{deploy_id}.")
            return found
        values: dict[str, object] = dict(fields)
        if "message_ts" in fields:
            # Any deploy but a merge one is its own thread: the message is its root.
            values["root_ts"] = case(
                (deploys.c.source != Source.MERGE.value, literal(fields["message_ts"], String(64))),
                else_=deploys.c.root_ts,
            )
            values["root_claimed_at"] = case(
                (deploys.c.source != Source.MERGE.value, null()), else_=deploys.c.root_claimed_at
            )
        with self._write() as conn:
            row = conn.execute(
                update(deploys).where(deploys.c.id == deploy_id).values(**values).returning(deploys)
            ).first()
        if row is None:
            raise UnknownDeploy(f"There is no deploy #{deploy_id}.")
        return _deploy(row)

    def finish_deploy(self, deploy_id: int, state: DeployState, error: str | None) -> Deploy:
        """Move a queued or running deploy to a final state; a final one is returned unchanged.

        ``error=None`` keeps any error already recorded.
        """
        if not state.is_final:
            raise ValueError(f"finish_deploy needs a final state, not {state.value}")
        values: dict[str, object] = {
            "state": state.value,
            "finished_at": _now(),
            "waiting_for": None,
            "recheck_at": None,
        }
        if error is not None:
            values["error"] = error
        with self._write() as conn:
            row = conn.execute(
                update(deploys)
                .where(deploys.c.id == deploy_id, deploys.c.state.in_(_ACTIVE))
                .values(**values)
                .returning(deploys)
            ).first()
            if row is None:
                row = conn.execute(select(deploys).where(deploys.c.id == deploy_id)).first()
            else:
                self._wake(conn)
        if row is None:
            raise UnknownDeploy(f"There is no deploy #{deploy_id}.")
        return _deploy(row)

    def cancel_queued(self, deploy_id: int) -> Deploy | None:
        """Queued → cancelled in one conditional write; None if it was not queued."""
        with self._write() as conn:
            row = conn.execute(
                update(deploys)
                .where(deploys.c.id == deploy_id, deploys.c.state == _QUEUED)
                .values(state=DeployState.CANCELLED.value, finished_at=_now())
                .returning(deploys)
            ).first()
            if row is not None:
                self._wake(conn)
        return None if row is None else _deploy(row)

    # the Slack root

    def claim_root(self, deploy_id: int, stale_after: float) -> str | None:
        """Claim posting the deploy's root message: a token for ``record_root``, or None when
        it is posted or another process's claim younger than ``stale_after`` s stands."""
        now = _now()
        with self._write() as conn:
            row = conn.execute(
                select(deploys.c.root_ts, deploys.c.root_claimed_at).where(deploys.c.id == deploy_id)
            ).first()
            if row is None:
                raise UnknownDeploy(f"There is no deploy #{deploy_id}.")
            claimed: datetime | None = row.root_claimed_at
            if row.root_ts is not None:
                return None
            if claimed is not None:
                if (now - claimed).total_seconds() < stale_after:
                    return None
                # A takeover's token must differ from the stale one's, even within a microsecond.
                now = max(now, claimed + timedelta(microseconds=1))
            was = (
                deploys.c.root_claimed_at.is_(None)
                if claimed is None
                else deploys.c.root_claimed_at == claimed
            )
            done = conn.execute(
                update(deploys)
                .where(deploys.c.id == deploy_id, deploys.c.root_ts.is_(None), was)
                .values(root_claimed_at=now)
                .returning(deploys.c.id)
            ).first()
        return now.isoformat() if done is not None else None

    def record_root(self, deploy_id: int, token: str, channel: str, ts: str) -> bool:
        """Record the root posted under claim ``token``; False if that claim was taken over.

        A deploy without a thread yet (any but a merge deploy in its announcement's) gets the
        root as its thread.
        """
        try:
            claimed: datetime | None = datetime.fromisoformat(token)
        except ValueError:
            claimed = None
        with self._write() as conn:
            if conn.execute(select(deploys.c.id).where(deploys.c.id == deploy_id)).first() is None:
                raise UnknownDeploy(f"There is no deploy #{deploy_id}.")
            if claimed is None or claimed.tzinfo is None:
                return False
            row = conn.execute(
                update(deploys)
                .where(deploys.c.id == deploy_id, deploys.c.root_claimed_at == claimed)
                .values(
                    root_ts=ts,
                    root_claimed_at=None,
                    channel=channel,
                    message_ts=func.coalesce(deploys.c.message_ts, ts),
                )
                .returning(deploys.c.id)
            ).first()
        return row is not None

    # waiting for CI

    def park(self, deploy_id: int, owner: int | None, note: str, recheck_in: float) -> Deploy | None:
        """Running → waiting (CI pending), releasing its owner; None if it is not ``owner``'s
        running deploy any more, or a cancel was asked meanwhile.

        ``note`` says what it waits for; its gate is due again ``recheck_in`` seconds from now.
        """
        owned = deploys.c.owner_id.is_(None) if owner is None else deploys.c.owner_id == owner
        with self._write() as conn:
            row = conn.execute(
                update(deploys)
                .where(
                    deploys.c.id == deploy_id,
                    deploys.c.state == _RUNNING,
                    owned,
                    deploys.c.cancel_requested.is_(False),
                )
                .values(
                    state=_WAITING,
                    owner_id=None,
                    step_pgid=None,
                    waiting_for=note,
                    recheck_at=_now() + timedelta(seconds=recheck_in),
                )
                .returning(deploys)
            ).first()
            if row is not None:
                self._wake(conn)  # other processes' timers learn of the re-check due
        return None if row is None else _deploy(row)

    def claim_recheck(self, recheck_in: float, only_id: int | None = None) -> Deploy | None:
        """Claim the re-check of the oldest waiting deploy that is due (one conditional write).

        Its next re-check is pushed ``recheck_in`` seconds on in the same write, so of all the
        processes looking, one checks; should it die checking, the next due time frees it again.
        """
        now = _now()
        due = (deploys.c.state == _WAITING) & (deploys.c.recheck_at <= now)
        candidates = select(deploys.c.id).where(due).order_by(deploys.c.id).limit(CLAIM_CANDIDATES)
        if only_id is not None:
            candidates = candidates.where(deploys.c.id == only_id)
        with self._read() as conn:
            ids = list(conn.scalars(candidates))
        for deploy_id in ids:
            with self._write() as conn:
                row = conn.execute(
                    update(deploys)
                    .where(deploys.c.id == deploy_id, due)
                    .values(recheck_at=now + timedelta(seconds=recheck_in))
                    .returning(deploys)
                ).first()
            if row is not None:
                return _deploy(row)
        return None

    def next_recheck(self) -> datetime | None:
        """When the soonest waiting deploy's gate, or approval timeout, is due (None: nothing waits)."""
        with self._read() as conn:
            found: datetime | None = conn.execute(
                select(func.min(deploys.c.recheck_at)).where(deploys.c.state.in_(_RECHECKED))
            ).scalar()
        if found is None:
            return None
        return found if found.tzinfo is not None else found.replace(tzinfo=UTC)

    def update_waiting(self, deploy_id: int, note: str) -> Deploy | None:
        """A waiting deploy's note (what it waits for); None if it is not waiting any more."""
        with self._write() as conn:
            row = conn.execute(
                update(deploys)
                .where(deploys.c.id == deploy_id, deploys.c.state == _WAITING)
                .values(waiting_for=note)
                .returning(deploys)
            ).first()
        return None if row is None else _deploy(row)

    def resume(self, deploy_id: int, owner: int | None) -> Deploy | None:
        """Waiting → running for ``owner`` (its CI went green); None if it is not waiting."""
        with self._write() as conn:
            row = conn.execute(
                update(deploys)
                .where(deploys.c.id == deploy_id, deploys.c.state == _WAITING)
                .values(state=_RUNNING, owner_id=owner, step_pgid=None, waiting_for=None, recheck_at=None)
                .returning(deploys)
            ).first()
        return None if row is None else _deploy(row)

    def finish_waiting(self, deploy_id: int, state: DeployState, error: str) -> Deploy | None:
        """Waiting → a final state (blocked, cancelled); None if it was not waiting."""
        if not state.is_final:
            raise ValueError(f"finish_waiting needs a final state, not {state.value}")
        with self._write() as conn:
            row = conn.execute(
                update(deploys)
                .where(deploys.c.id == deploy_id, deploys.c.state == _WAITING)
                .values(state=state.value, finished_at=_now(), error=error, waiting_for=None, recheck_at=None)
                .returning(deploys)
            ).first()
            if row is not None:
                self._wake(conn)
        return None if row is None else _deploy(row)

    def request_cancel(self, deploy_id: int) -> Deploy | None:
        """Flag a running deploy for cancellation; None if it was not running."""
        with self._write() as conn:
            row = conn.execute(
                update(deploys)
                .where(deploys.c.id == deploy_id, deploys.c.state == _RUNNING)
                .values(cancel_requested=True)
                .returning(deploys)
            ).first()
        return None if row is None else _deploy(row)

    def record_step(self, deploy_id: int, pgid: int | None) -> bool:
        """Record (or clear) the process group of the deploy's running step.

        False when the deploy is no longer running (another process took it over).
        """
        with self._write() as conn:
            row = conn.execute(
                update(deploys)
                .where(deploys.c.id == deploy_id, deploys.c.state == _RUNNING)
                .values(step_pgid=pgid)
                .returning(deploys.c.id)
            ).first()
        return row is not None

    def orphaned_deploys(self, lease: float, exclude: int | None = None) -> list[Orphan]:
        """Running deploys whose owner is unknown, stopped, or silent for over ``lease`` seconds.

        ``exclude``: a process that knows it is alive (the caller) is never its own orphan.
        """
        query = select(deploys).where(deploys.c.state == _RUNNING, ~_owner_alive(lease, self._database_clock))
        query = query.order_by(deploys.c.id)
        if exclude is not None:
            query = query.where((deploys.c.owner_id.is_(None)) | (deploys.c.owner_id != exclude))
        with self._read() as conn:
            found = [_deploy(r) for r in conn.execute(query)]
            owner_ids = {d.owner_id for d in found if d.owner_id is not None}
            owners = (
                {
                    p.id: p
                    for p in map(
                        _process, conn.execute(select(processes).where(processes.c.id.in_(owner_ids)))
                    )
                }
                if owner_ids
                else {}
            )
        return [Orphan(d, owners.get(d.owner_id) if d.owner_id is not None else None) for d in found]

    def take_over(
        self, deploy_id: int, lease: float, error: str, lock_reason: str | None = None
    ) -> Deploy | None:
        """Running → interrupted, only while its owner is still past its lease; None otherwise.

        One conditional write, so of several processes taking the same deploy exactly one gets
        it. ``lock_reason`` locks the deploy's repo + env in the same transaction, so nothing
        can start there between the interrupt and the lock.
        """
        with self._write() as conn:
            row = conn.execute(
                update(deploys)
                .where(
                    deploys.c.id == deploy_id,
                    deploys.c.state == _RUNNING,
                    ~_owner_alive(lease, self._database_clock),
                )
                .values(state=DeployState.INTERRUPTED.value, finished_at=_now(), error=error)
                .returning(deploys)
            ).first()
            if row is not None:
                self._wake(conn)
            if row is not None and lock_reason is not None:
                values: dict[str, object] = {
                    "repo": row.repo,
                    "env": row.env,
                    "locked_by": TAKEOVER_LOCKED_BY,
                    "reason": lock_reason,
                    "locked_at": _now(),
                }
                # A person's lock (an incident freeze) stays as it is: it already holds the env.
                # One that ran out holds nothing: it makes way.
                self._drop_expired(conn, row.repo, row.env)
                conn.execute(self._upsert(locks, ("repo", "env"), values, keep_existing=True))
        return None if row is None else _deploy(row)

    # approvals

    def approve(self, deploy_id: int, approver: str, required: int) -> ApprovalResult:
        """Record ``approver``'s approval once; the ``required``-th moves the deploy
        awaiting_approval → queued in the same transaction.

        The deploy's row is locked first (PostgreSQL: FOR UPDATE; SQLite: the write lock), so
        two processes approving at once count each other's approval and queue it once.
        """
        with self._write() as conn:
            row = conn.execute(select(deploys).where(deploys.c.id == deploy_id).with_for_update()).first()
            if row is None:
                raise UnknownDeploy(f"There is no deploy #{deploy_id}.")
            if row.state != _AWAITING:
                return ApprovalResult(_deploy(row), self._approvals_of(conn, deploy_id), False, False)
            values = {"deploy_id": deploy_id, "approver": approver, "approved_at": _now()}
            insert_once = self._upsert(approvals, ("deploy_id", "approver"), values, keep_existing=True)
            recorded = conn.execute(insert_once.returning(approvals.c.id)).first() is not None
            given = self._approvals_of(conn, deploy_id)
            queued = None
            if len(given) >= required:
                queued = conn.execute(
                    update(deploys)
                    .where(deploys.c.id == deploy_id, deploys.c.state == _AWAITING)
                    .values(state=_QUEUED, recheck_at=None, waiting_for=None)
                    .returning(deploys)
                ).first()
                if queued is not None:
                    self._wake(conn)
        return ApprovalResult(_deploy(queued or row), given, recorded, queued is not None)

    def finish_approval(self, deploy_id: int, state: DeployState, error: str) -> Deploy | None:
        """Awaiting approval → a final state (rejected, cancelled); None if it was not awaiting."""
        if not state.is_final:
            raise ValueError(f"finish_approval needs a final state, not {state.value}")
        with self._write() as conn:
            row = conn.execute(
                update(deploys)
                .where(deploys.c.id == deploy_id, deploys.c.state == _AWAITING)
                .values(state=state.value, finished_at=_now(), error=error, waiting_for=None, recheck_at=None)
                .returning(deploys)
            ).first()
            if row is not None:
                self._wake(conn)
        return None if row is None else _deploy(row)

    def expire_approval(self, error: str, only_id: int | None = None) -> Deploy | None:
        """The oldest deploy whose approval time ran out, now expired (one conditional write, so
        of every process looking exactly one expires it); None when none is due."""
        now = _now()
        due = (deploys.c.state == _AWAITING) & (deploys.c.recheck_at <= now)
        candidates = select(deploys.c.id).where(due).order_by(deploys.c.id).limit(CLAIM_CANDIDATES)
        if only_id is not None:
            candidates = candidates.where(deploys.c.id == only_id)
        with self._read() as conn:
            ids = list(conn.scalars(candidates))
        for deploy_id in ids:
            with self._write() as conn:
                row = conn.execute(
                    update(deploys)
                    .where(deploys.c.id == deploy_id, due)
                    .values(state=DeployState.EXPIRED.value, finished_at=now, error=error, recheck_at=None)
                    .returning(deploys)
                ).first()
                if row is not None:
                    self._wake(conn)
            if row is not None:
                return _deploy(row)
        return None

    def list_approvals(self, deploy_ids: Sequence[int]) -> dict[int, tuple[Approval, ...]]:
        """The approvals of each deploy asked about, oldest first (a deploy with none is absent)."""
        if not deploy_ids:
            return {}
        query = select(approvals).where(approvals.c.deploy_id.in_(list(deploy_ids))).order_by(approvals.c.id)
        found: dict[int, list[Approval]] = {}
        with self._read() as conn:
            for row in conn.execute(query):
                found.setdefault(row.deploy_id, []).append(_approval(row))
        return {deploy_id: tuple(given) for deploy_id, given in found.items()}

    def _approvals_of(self, conn: Connection, deploy_id: int) -> tuple[Approval, ...]:
        query = select(approvals).where(approvals.c.deploy_id == deploy_id).order_by(approvals.c.id)
        return tuple(_approval(row) for row in conn.execute(query))

    # processes

    @property
    def _database_clock(self) -> bool:
        """PostgreSQL stamps heartbeats with its own clock: several hosts, one time."""
        return self._engine.dialect.name == "postgresql"

    def _heartbeat_now(self) -> object:
        return func.now() if self._database_clock else _now()

    def register_process(self, info: ProcessInfo) -> RobotProcess:
        """Record a starting robot process; its first heartbeat is now."""
        now = self._heartbeat_now()  # one value: the first heartbeat is the start
        values: dict[str, object] = {
            "host": info.host,
            "pid": info.pid,
            "boot_id": info.boot_id,
            "kind": info.kind.value,
            "started_at": now,
            "heartbeat_at": now,
        }
        with self._write() as conn:
            row = conn.execute(insert(processes).values(**values).returning(processes)).one()
        return _process(row)

    def heartbeat(self, process_id: int) -> None:
        """Renew the process's lease."""
        with self._write() as conn:
            conn.execute(
                update(processes)
                .where(processes.c.id == process_id)
                .values(heartbeat_at=self._heartbeat_now())
            )

    def stop_process(self, process_id: int) -> None:
        """Record a clean stop: the process's deploys are anybody's at once."""
        with self._write() as conn:
            conn.execute(
                update(processes)
                .where(processes.c.id == process_id, processes.c.stopped_at.is_(None))
                .values(stopped_at=_now())
            )

    def prune_processes(self, silent_for: float) -> int:
        """Delete the rows of processes silent for over ``silent_for`` seconds (stopped or dead)
        that own no active deploy; how many went.

        One conditional delete: a row a running deploy names stays, so a takeover still finds
        its owner's host and boot id. A stopped process beats no more, so its row goes too.
        """
        cutoff = _heartbeat_cutoff(silent_for, self._database_clock)
        owns = exists().where(
            deploys.c.owner_id == processes.c.id, deploys.c.state.in_([_QUEUED, _WAITING, _RUNNING])
        )
        with self._write() as conn:
            gone = conn.execute(delete(processes).where(processes.c.heartbeat_at < cutoff, ~owns))
        return int(gone.rowcount or 0)

    def get_process(self, process_id: int) -> RobotProcess | None:
        """The registered process with that id, or None."""
        with self._read() as conn:
            row = conn.execute(select(processes).where(processes.c.id == process_id)).first()
        return None if row is None else _process(row)

    def list_deploys(
        self,
        repo: str | None = None,
        env: str | None = None,
        states: Sequence[DeployState] | None = None,
        limit: int = 50,
        since: datetime | None = None,
    ) -> list[Deploy]:
        """Newest first, optionally only one repo, environment, set of states, or those created since."""
        if limit <= 0:
            return []
        query = select(deploys).order_by(deploys.c.id.desc()).limit(limit)
        if repo is not None:
            query = query.where(deploys.c.repo == repo)
        if env is not None:
            query = query.where(deploys.c.env == env)
        if states is not None:
            query = query.where(deploys.c.state.in_([s.value for s in states]))
        if since is not None:
            query = query.where(deploys.c.created_at >= since)
        with self._read() as conn:
            return [_deploy(r) for r in conn.execute(query)]

    def last_succeeded(self, repo: str, env: str) -> Deploy | None:
        """The newest succeeded deploy of repo+env (deploys of one env run in id order)."""
        found = self.list_deploys(repo, env, [DeployState.SUCCEEDED], limit=1)
        return found[0] if found else None

    def rollback_choice(self, repo: str, env: str) -> RollbackChoice:
        """What repo + env would roll back to: see RollbackChoice (three reads, one transaction)."""
        succeeded = (
            (deploys.c.repo == repo)
            & (deploys.c.env == env)
            & (deploys.c.state == DeployState.SUCCEEDED.value)
        )
        rollback = deploys.alias("rollback")
        undone_query = (
            select(deploys.c.sha)
            .distinct()
            .join(rollback, rollback.c.rollback_of == deploys.c.id)
            .where(
                rollback.c.repo == repo,
                rollback.c.env == env,
                rollback.c.state == DeployState.SUCCEEDED.value,
                deploys.c.repo == repo,
                deploys.c.env == env,
            )
        )
        newest = select(deploys).where(succeeded).order_by(deploys.c.id.desc()).limit(1)
        with self._read() as conn:
            current_row = conn.execute(newest).first()
            if current_row is None:
                return RollbackChoice(repo, env, None, None)
            current = _deploy(current_row)
            undone = frozenset(conn.scalars(undone_query))
            skip = [current.sha, *undone]
            target_row = conn.execute(
                select(deploys)
                .where(succeeded, deploys.c.sha.not_in(skip))
                .order_by(deploys.c.id.desc())
                .limit(1)
            ).first()
        target = None if target_row is None else _deploy(target_row)
        return RollbackChoice(repo, env, current, target, undone)

    # logs

    def append_log(self, deploy_id: int, lines: Sequence[str]) -> None:
        """Store a batch of output lines as one chunk: one small insert per batch."""
        if not lines:
            return
        # Build output may hold NUL bytes (valid UTF-8) that PostgreSQL text refuses outright;
        # the log keeps a visible replacement character instead of failing the deploy.
        text = "\n".join(lines).replace("\x00", "\ufffd")
        next_seq = select(func.coalesce(func.max(deploy_logs.c.seq) + 1, 0)).where(
            deploy_logs.c.deploy_id == deploy_id
        )
        for _ in range(MAX_APPEND_ATTEMPTS):
            try:
                with self._write() as conn:
                    seq = conn.execute(next_seq).scalar_one()
                    conn.execute(insert(deploy_logs).values(deploy_id=deploy_id, seq=seq, text=text))
                    return
            except IntegrityError:
                if self.get_deploy(deploy_id) is None:
                    raise UnknownDeploy(f"There is no deploy #{deploy_id}.") from None
                # Two appenders took the same seq (PostgreSQL); the loser tries the next one.
                continue
        raise RuntimeError(f"could not append to the log of deploy #{deploy_id}")

    def read_log(self, deploy_id: int) -> str:
        """The whole log of a deploy, lines joined by newlines ("" if none)."""
        query = (
            select(deploy_logs.c.text).where(deploy_logs.c.deploy_id == deploy_id).order_by(deploy_logs.c.seq)
        )
        with self._read() as conn:
            return "\n".join(conn.scalars(query))

    def prune_logs(self, finished_before: datetime, batch_size: int = PRUNE_BATCH) -> int:
        """Delete the logs of deploys that ended before ``finished_before``; their rows stay.

        Returns how many deploys lost their log. A batch of deploys per transaction, so a first
        prune of years of logs never holds the write lock long (heartbeats and claims go on).
        SQLite reuses the freed pages for new logs (the file does not shrink).
        """
        batch = (
            select(deploys.c.id)
            .where(
                deploys.c.state.in_([s.value for s in FINAL_STATES]),
                deploys.c.finished_at < finished_before,
                exists().where(deploy_logs.c.deploy_id == deploys.c.id),
            )
            .order_by(deploys.c.id)
            .limit(batch_size)
        )
        pruned = 0
        while True:
            with self._write() as conn:
                ids = list(conn.scalars(batch))
                if ids:
                    conn.execute(delete(deploy_logs).where(deploy_logs.c.deploy_id.in_(ids)))
            pruned += len(ids)
            if len(ids) < batch_size:
                return pruned

    # locks

    def set_lock(
        self, repo: str, env: str, locked_by: str, reason: str, duration: timedelta | None = None
    ) -> Lock:
        """Lock repo+env (until ``duration`` has passed, when given); locking again replaces who,
        why, when and until when."""
        now = self._lock_clock()  # one clock for when it was locked and when it lets go
        values: dict[str, object] = {
            "repo": repo,
            "env": env,
            "locked_by": locked_by,
            "reason": reason,
            "locked_at": now,
            "expires_at": None if duration is None else self._later(now, duration),
        }
        with self._write() as conn:
            self._drop_expired(conn, repo, env)
            row = conn.execute(self._upsert(locks, ("repo", "env"), values).returning(locks)).one()
            conn.execute(_lock_event(row, "locked", locked_by))
        return _lock(row)

    def get_lock(self, repo: str, env: str) -> Lock | None:
        """The lock on repo+env, or None (also once it has expired)."""
        with self._read() as conn:
            query = select(locks).where(locks.c.repo == repo, locks.c.env == env, self._unexpired())
            row = conn.execute(query).first()
        return None if row is None else _lock(row)

    def list_locks(self, repo: str | None = None) -> list[Lock]:
        """Every lock that holds (or one repo's), by repo then environment."""
        query = select(locks).where(self._unexpired()).order_by(locks.c.repo, locks.c.env)
        if repo is not None:
            query = query.where(locks.c.repo == repo)
        with self._read() as conn:
            return [_lock(r) for r in conn.execute(query)]

    def remove_lock(self, repo: str, env: str, unlocked_by: str) -> Lock | None:
        """Unlock repo+env, recording who did; the lock that was removed, or None if there was none.

        A lock that has expired is not there to remove: its release is the robot's to record and tell.
        """
        with self._write() as conn:
            row = conn.execute(
                delete(locks)
                .where(locks.c.repo == repo, locks.c.env == env, self._unexpired())
                .returning(locks)
            ).first()
            if row is not None:
                conn.execute(_lock_event(row, "unlocked", unlocked_by))
                self._wake(conn)
        return None if row is None else _lock(row)

    def release_expired_locks(self) -> list[Lock]:
        """Delete the locks whose time ran out, each recorded as unlocked by the robot; the ones
        this call deleted.

        One conditional delete: of several processes releasing at once, each lock goes to exactly
        one of them (the one to tell the channel). A lock renewed meanwhile no longer matches.
        """
        with self._write() as conn:
            rows = conn.execute(delete(locks).where(self._expired()).returning(locks)).all()
            for row in rows:
                conn.execute(_lock_event(row, "unlocked", str(ROBOT)))
            if rows:
                self._wake(conn)
        return sorted((_lock(r) for r in rows), key=lambda lock: (lock.repo, lock.env))

    def next_lock_expiry(self) -> datetime | None:
        """When the soonest lock with a duration lets go (None: no lock has one)."""
        with self._read() as conn:
            when: datetime | None = conn.execute(select(func.min(locks.c.expires_at))).scalar()
        if when is None:
            return None
        return when if when.tzinfo is not None else when.replace(tzinfo=UTC)

    def _lock_clock(self) -> object:
        """Now, as locks are judged: the database's clock on PostgreSQL (one for every host)."""
        return func.now() if self._database_clock else _now()

    def _later(self, now: object, duration: timedelta) -> object:
        """``now`` + ``duration`` on the clock ``now`` came from."""
        if isinstance(now, datetime):
            return now + duration
        return func.now() + func.make_interval(0, 0, 0, 0, 0, 0, duration.total_seconds())

    def _unexpired(self) -> ColumnElement[bool]:
        """A lock row that still holds: no duration, or one that has not run out."""
        return locks.c.expires_at.is_(None) | (locks.c.expires_at > self._lock_clock())

    def _expired(self) -> ColumnElement[bool]:
        return locks.c.expires_at.is_not(None) & (locks.c.expires_at <= self._lock_clock())

    def _drop_expired(self, conn: Connection, repo: str, env: str) -> None:
        """Remove repo+env's lock if it ran out (the history records the robot's unlock), so a
        new lock replaces it. Only a lock released by ``release_expired_locks`` is told in Slack."""
        row = conn.execute(
            delete(locks).where(locks.c.repo == repo, locks.c.env == env, self._expired()).returning(locks)
        ).first()
        if row is not None:
            conn.execute(_lock_event(row, "unlocked", str(ROBOT)))

    def lock_history(self, repo: str, env: str, limit: int = 20) -> list[LockEvent]:
        """The newest locks and unlocks of repo+env first."""
        query = (
            select(lock_events)
            .where(lock_events.c.repo == repo, lock_events.c.env == env)
            .order_by(lock_events.c.id.desc())
            .limit(limit)
        )
        with self._read() as conn:
            return [LockEvent(r.repo, r.env, r.action, r.actor, r.reason, r.at) for r in conn.execute(query)]

    # heads

    def get_head(self, repo: str) -> BranchHead | None:
        """The last branch head the poller recorded for repo, or None."""
        with self._read() as conn:
            row = conn.execute(select(heads).where(heads.c.repo == repo)).first()
        if row is None:
            return None
        return BranchHead(row.repo, row.sha, row.etag, row.owed_from, row.owed_by)

    def set_head(self, head: BranchHead) -> None:
        """Record the branch head (and its ETag) the poller saw, whatever was recorded before."""
        values: dict[str, object] = {
            "repo": head.repo,
            "sha": head.sha,
            "etag": head.etag,
            "updated_at": _now(),
        }
        with self._write() as conn:
            conn.execute(self._upsert(heads, ("repo",), values))

    def claim_head(
        self,
        previous: str | None,
        head: BranchHead,
        auto_deploy: AutoDeploy | None = None,
        *,
        owed: bool = False,
        by: int | None = None,
    ) -> HeadClaim:
        """Move the recorded head from ``previous`` (None: none yet) to ``head``: one conditional write.

        Of several pollers seeing the same move, exactly one wins; only the winner announces.
        ``auto_deploy`` (pending) is claimed in the same transaction, unless that repo + env + SHA
        was claimed before; older pending auto-deploys of the repo + env expire (a newer merge).
        ``owed``: the move's announcement is owed from now on, posted by process ``by``, until
        ``announcement_posted`` (a move to the same SHA, a new ETag, leaves what is owed alone).
        """
        values: dict[str, object] = {"sha": head.sha, "etag": head.etag, "updated_at": _now()}
        if previous != head.sha:
            values |= {"owed_from": previous if owed else None, "owed_by": by if owed else None}
        try:
            with self._write() as conn:
                if previous is None:
                    conn.execute(insert(heads).values(repo=head.repo, **values))
                else:
                    moved = conn.execute(
                        update(heads)
                        .where(heads.c.repo == head.repo, heads.c.sha == previous)
                        .values(**values)
                        .returning(heads.c.repo)
                    ).first()
                    if moved is None:
                        return HeadClaim(False)
                if auto_deploy is None or previous == head.sha:
                    return HeadClaim(True)
                return HeadClaim(True, self._claim_auto_deploy(conn, auto_deploy))
        except IntegrityError:
            # First sightings by two pollers: the primary key let one in.
            return HeadClaim(False)

    def release_head(self, claimed: BranchHead, previous: BranchHead, auto_deploy: AutoDeploy | None) -> bool:
        """Undo a claim whose announcement failed: the head (and ETag) back to ``previous``.

        ``auto_deploy``, the one the claim made, goes with it while still pending. False if the
        head moved on since (another poller's claim stands).
        """
        with self._write() as conn:
            back = conn.execute(
                update(heads)
                .where(heads.c.repo == claimed.repo, heads.c.sha == claimed.sha)
                .values(sha=previous.sha, etag=previous.etag, updated_at=_now(), owed_from=None, owed_by=None)
                .returning(heads.c.repo)
            ).first()
            if back is not None and auto_deploy is not None:
                conn.execute(delete(auto_deploys).where(_auto_key(auto_deploy), _PENDING_AUTO))
        return back is not None

    def announcement_posted(self, repo: str, sha: str) -> bool:
        """Slack took the announcement of the move to ``sha``: nothing is owed for it any more
        (False if nothing was: the head moved on, or it was recorded already)."""
        with self._write() as conn:
            done = conn.execute(
                update(heads)
                .where(heads.c.repo == repo, heads.c.sha == sha, heads.c.owed_from.is_not(None))
                .values(owed_from=None, owed_by=None)
                .returning(heads.c.repo)
            ).first()
        return done is not None

    def reclaim_announcement(self, repo: str, sha: str, by: int | None, lease: float) -> str | None:
        """Take over the owed announcement of the move to ``sha`` for process ``by``: one
        conditional write, won only while its poster is ``by`` itself, nobody, or a process whose
        heartbeat is older than ``lease`` s. The SHA the move came from, or None when not won.

        A stopping process beats no more but may still be flushing Slack: only its heartbeat
        counts, so its announcement is its own for ``lease`` s after its last beat.
        """
        alive = exists().where(
            processes.c.id == heads.c.owed_by,
            processes.c.heartbeat_at >= _heartbeat_cutoff(lease, self._database_clock),
        )
        poster = heads.c.owed_by.is_(None) | ~alive
        if by is not None:
            poster = poster | (heads.c.owed_by == by)
        with self._write() as conn:
            row = conn.execute(
                update(heads)
                .where(heads.c.repo == repo, heads.c.sha == sha, heads.c.owed_from.is_not(None), poster)
                .values(owed_by=by)
                .returning(heads.c.owed_from)
            ).first()
        return None if row is None else str(row.owed_from)

    # the poller's lease

    def lead_poller(self, process_id: int, lease: float) -> bool:
        """Take or keep the right to poll merges: True while this process holds it.

        PostgreSQL: a session advisory lock held on a connection of its own for as long as this
        process leads; it ends with the connection. SQLite: the ``poller_lease`` row, taken or
        renewed for ``lease`` seconds with one conditional write.
        """
        if self._engine.dialect.name == "postgresql":
            return self._hold_advisory_lock(lease)
        now = _now()
        row = {"name": POLLER_LEASE, "holder": process_id, "expires_at": now + timedelta(seconds=lease)}
        ours_or_lapsed = (poller_lease.c.holder == process_id) | (poller_lease.c.expires_at < now)
        take = (
            sqlite.insert(poller_lease)
            .values(**row)
            .on_conflict_do_update(
                index_elements=["name"],
                set_={"holder": process_id, "expires_at": row["expires_at"]},
                where=ours_or_lapsed,
            )
        )
        with self._write() as conn:
            conn.execute(take)
            holder = conn.execute(
                select(poller_lease.c.holder).where(poller_lease.c.name == POLLER_LEASE)
            ).scalar_one()
        return bool(holder == process_id)

    def resign_poller(self, process_id: int) -> None:
        """Give up polling merges (a clean stop): another process may lead at once."""
        if self._engine.dialect.name == "postgresql":
            self._drop_leader_connection(unlock=True)
            return
        with self._write() as conn:
            conn.execute(
                delete(poller_lease).where(
                    poller_lease.c.name == POLLER_LEASE, poller_lease.c.holder == process_id
                )
            )

    def _hold_advisory_lock(self, lease: float) -> bool:
        with self._leader_lock:
            if self._leader is not None:
                try:
                    self._leader.exec_driver_sql("SELECT 1")
                    self._leader.commit()
                    return True
                except SQLAlchemyError:
                    # The connection died, and with it the lock: another process may lead now.
                    log.warning("lost the merge poller's database connection; polling stops here")
                    self._close_leader_quietly()
            with _unavailable_as_store_error():
                conn = self._engine.connect()
            try:
                won = bool(
                    conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": POLLER_LOCK_KEY}).scalar()
                )
                conn.commit()
                if won:
                    # A leader whose host or network dies sends no FIN: the server's keepalive
                    # probes end its session (and free the lock) within about the lease, not hours.
                    for name, seconds in _keepalives(lease).items():
                        conn.execute(text(f"SET {name} = {seconds}"))
                    conn.commit()
            except DBAPIError as exc:
                conn.invalidate()
                conn.close()
                raise StoreError(f"the database is unavailable: {exc.orig or exc}") from exc
            if not won:
                conn.close()
                return False
            self._leader = conn
            return True

    def _drop_leader_connection(self, unlock: bool) -> None:
        with self._leader_lock:
            if self._leader is None:
                return
            if unlock:
                try:
                    self._leader.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": POLLER_LOCK_KEY})
                    self._leader.commit()
                except SQLAlchemyError:
                    pass  # a dead connection has let go of the lock already
            self._close_leader_quietly()

    def _close_leader_quietly(self) -> None:
        conn, self._leader = self._leader, None
        if conn is not None:
            try:
                conn.invalidate()  # never back to the pool: it may still hold the lock
                conn.close()
            except SQLAlchemyError:
                pass  # already gone

    # auto-deploys

    def mark_auto_deployed(self, repo: str, env: str, sha: str) -> bool:
        """Claim the merge auto-deploy of repo + env + SHA (pending): True only for the first caller ever."""
        claim = AutoDeploy(repo, env, sha, AutoDeployStatus.PENDING, "merge", _now())
        try:
            with self._write() as conn:
                return self._claim_auto_deploy(conn, claim) is not None
        except IntegrityError:
            return False

    def _claim_auto_deploy(self, conn: Connection, claim: AutoDeploy) -> AutoDeploy | None:
        """Insert the pending claim unless this repo + env + SHA has one; newer merge wins."""
        if conn.execute(select(auto_deploys.c.sha).where(_auto_key(claim))).first() is not None:
            return None
        conn.execute(
            update(auto_deploys)
            .where(
                auto_deploys.c.repo == claim.repo,
                auto_deploys.c.env == claim.env,
                auto_deploys.c.sha != claim.sha,
                _PENDING_AUTO,
            )
            .values(status=AutoDeployStatus.EXPIRED.value, note=f"superseded by {claim.sha[:7]}")
        )
        row = conn.execute(
            insert(auto_deploys)
            .values(
                repo=claim.repo,
                env=claim.env,
                sha=claim.sha,
                created_at=_now(),
                status=AutoDeployStatus.PENDING.value,
                requested_by=claim.requested_by,
                deadline=claim.deadline,
                channel=claim.channel,
                message_ts=claim.message_ts,
            )
            .returning(auto_deploys)
        ).one()
        return _auto_deploy(row)

    def get_auto_deploy(self, repo: str, env: str, sha: str) -> AutoDeploy | None:
        """The auto-deploy claim of repo + env + SHA, or None."""
        key = AutoDeploy(repo, env, sha, AutoDeployStatus.PENDING, "", _now())
        with self._read() as conn:
            row = conn.execute(select(auto_deploys).where(_auto_key(key))).first()
        return None if row is None else _auto_deploy(row)

    def pending_auto_deploys(self) -> list[AutoDeploy]:
        """Every auto-deploy still waiting (for CI, or for an unlock), oldest first."""
        query = select(auto_deploys).where(_PENDING_AUTO).order_by(auto_deploys.c.created_at)
        with self._read() as conn:
            return [_auto_deploy(r) for r in conn.execute(query)]

    def update_auto_deploy(
        self,
        claim: AutoDeploy,
        *,
        thread: tuple[str, str] | None = None,
        note: str | None = None,
        expire: bool = False,
    ) -> bool:
        """Change a pending auto-deploy: its thread (channel, ts), its note, or expire it.

        One conditional write: False when it is no longer pending, or when ``note`` is what it
        says already (so each thing is said once, by one process).
        """
        values: dict[str, object] = {}
        where = [_auto_key(claim), _PENDING_AUTO]
        if thread is not None:
            values["channel"], values["message_ts"] = thread
        if note is not None:
            values["note"] = note
            if not expire:
                where.append(auto_deploys.c.note.is_distinct_from(note))
        if expire:
            values["status"] = AutoDeployStatus.EXPIRED.value
        if not values:
            return False
        with self._write() as conn:
            row = conn.execute(
                update(auto_deploys).where(*where).values(**values).returning(auto_deploys.c.sha)
            ).first()
        return row is not None

    def queue_auto_deploy(self, request: DeployRequest) -> tuple[Deploy, bool] | None:
        """Pending → queued, and the deploy queued, in one transaction; None if no longer pending.

        The deploy is the identical one already queued or running when there is one (False).
        """
        key = AutoDeploy(request.repo, request.env, request.sha, AutoDeployStatus.PENDING, "", _now())
        same_active = select(deploys).where(
            deploys.c.repo == request.repo,
            deploys.c.env == request.env,
            deploys.c.sha == request.sha,
            deploys.c.state.in_(_ACTIVE),
        )
        for _ in range(MAX_CREATE_ATTEMPTS):
            try:
                with self._write() as conn:
                    taken = conn.execute(
                        update(auto_deploys)
                        .where(_auto_key(key), _PENDING_AUTO)
                        .values(status=AutoDeployStatus.QUEUED.value, note=None)
                        .returning(auto_deploys.c.sha)
                    ).first()
                    if taken is None:
                        return None
                    existing = conn.execute(same_active).first()
                    if existing is not None:
                        deploy, created = _deploy(existing), False
                    else:
                        row = conn.execute(
                            insert(deploys).values(_new_deploy(request)).returning(deploys)
                        ).one()
                        deploy, created = _deploy(row), True
                    conn.execute(update(auto_deploys).where(_auto_key(key)).values(deploy_id=deploy.id))
                    return deploy, created
            except IntegrityError:
                # The same deploy was queued by another process meanwhile (PostgreSQL): the
                # transaction rolled back whole, the claim is pending again; the next round finds it.
                continue
        raise RuntimeError(f"could not queue the auto-deploy of {request.repo}@{request.sha}")

    # App Home viewers

    def open_home(self, user: str) -> HomeViewer:
        """Record that ``user`` opened the App Home now; their viewer row, repo filter kept."""
        values: dict[str, object] = {"user_id": user, "opened_at": _now()}
        with self._write() as conn:
            row = conn.execute(self._upsert(home_views, ("user_id",), values).returning(home_views)).one()
        return HomeViewer(row.user_id, row.opened_at, row.repo_filter)

    def set_home_filter(self, user: str, repo: str | None) -> HomeViewer:
        """Remember the repo ``user`` filters their App Home on (None: every repo)."""
        values: dict[str, object] = {"user_id": user, "opened_at": _now(), "repo_filter": repo}
        with self._write() as conn:
            row = conn.execute(self._upsert(home_views, ("user_id",), values).returning(home_views)).one()
        return HomeViewer(row.user_id, row.opened_at, row.repo_filter)

    def home_viewers(self, opened_since: datetime) -> list[HomeViewer]:
        """Who opened the App Home at or after ``opened_since``, most recent first."""
        query = (
            select(home_views)
            .where(home_views.c.opened_at >= opened_since)
            .order_by(home_views.c.opened_at.desc())
        )
        with self._read() as conn:
            return [HomeViewer(r.user_id, r.opened_at, r.repo_filter) for r in conn.execute(query)]


def _keepalives(lease: float) -> dict[str, int]:
    """PostgreSQL's TCP keepalive settings that notice a dead client within about ``lease`` s."""
    return {
        "tcp_keepalives_idle": max(1, int(lease / 3)),
        "tcp_keepalives_interval": max(1, int(lease / 6)),
        "tcp_keepalives_count": 3,
    }


def _auto_key(claim: AutoDeploy) -> ColumnElement[bool]:
    return (
        (auto_deploys.c.repo == claim.repo)
        & (auto_deploys.c.env == claim.env)
        & (auto_deploys.c.sha == claim.sha)
    )


_PENDING_AUTO = auto_deploys.c.status == AutoDeployStatus.PENDING.value


def _auto_deploy(row: Row[tuple[object, ...]]) -> AutoDeploy:
    m = row._mapping
    return AutoDeploy(
        repo=m["repo"],
        env=m["env"],
        sha=m["sha"],
        status=AutoDeployStatus(m["status"]),
        requested_by=m["requested_by"] or "merge",
        deadline=m["deadline"] or m["created_at"],
        channel=m["channel"],
        message_ts=m["message_ts"],
        deploy_id=m["deploy_id"],
        note=m["note"],
    )


def _approval(row: Row[tuple[object, ...]]) -> Approval:
    m = row._mapping
    return Approval(deploy_id=m["deploy_id"], approver=m["approver"], at=m["approved_at"])


def _new_deploy(request: DeployRequest) -> dict[str, object]:
    """The row of a newly queued deploy (awaiting approval, due to expire, where it needs one)."""
    awaiting = request.approval_timeout is not None
    return {
        "repo": request.repo,
        "env": request.env,
        "ref": request.ref,
        "sha": request.sha,
        "requested_by": request.requested_by,
        "source": request.source.value,
        "state": _QUEUED,
        "force": request.force,
        "channel": request.channel,
        "message_ts": request.message_ts,
        # Any deploy but a merge one given a thread has that message as its root.
        "root_ts": request.message_ts if request.source is not Source.MERGE else None,
        "created_at": _now(),
        "cancel_requested": False,
        "rollback_of": request.rollback_of,
        **(_awaiting_approval(request.approval_timeout) if awaiting else {}),
    }


def _awaiting_approval(timeout: float | None) -> dict[str, object]:
    """A new deploy awaiting approval: expired at ``recheck_at`` unless approved by then."""
    return {"state": _AWAITING, "recheck_at": _now() + timedelta(seconds=timeout or 0)}
