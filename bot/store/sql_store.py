"""SqlStore: the StorePort on SQLAlchemy Core, correct under threads and several processes."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Insert,
    String,
    Table,
    case,
    exists,
    func,
    insert,
    literal,
    null,
    select,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError

from bot.errors import UnknownDeploy
from bot.models import (
    Deploy,
    DeployRequest,
    DeployState,
    Source,
)
from bot.ports import ChangeFeed
from bot.store import migrate
from bot.store.approval_rows import ApprovalRows
from bot.store.auto_deploy_rows import AutoDeployRows
from bot.store.changes import ChangeListRows
from bot.store.engine import IMMEDIATE
from bot.store.feed import WAKE_CHANNEL, open_feed
from bot.store.head_rows import HeadRows
from bot.store.home_rows import HomeViewRows
from bot.store.lease_rows import PollerLeaseRows
from bot.store.lock_rows import LockRows, unexpired
from bot.store.log_rows import LogRows
from bot.store.migrate import SchemaState
from bot.store.plumbing import CLAIM_CANDIDATES, MAX_CREATE_ATTEMPTS, same_active, unavailable_as_store_error
from bot.store.process_rows import ProcessRows, owner_alive
from bot.store.rollback_rows import RollbackRows
from bot.store.root_rows import RootRows
from bot.store.rows import (
    ACTIVE,
    HOLDING,
    QUEUED,
    RUNNING,
    deploy_of,
    new_deploy,
    utc_now,
)
from bot.store.schema import (
    deploys,
    locks,
)
from bot.store.waiting_rows import WaitingRows

UPDATABLE_FIELDS = frozenset({"github_deployment_id", "channel", "message_ts", "error"})
# Bounds on retries after a lost race with another thread or process.
MAX_CLAIM_ROUNDS = 3


# The first key of the two-key advisory locks that serialize queue writes per repo + env
# (two-key locks never collide with one-key ones, such as a poller's).
_QUEUE_LOCK_CLASS = 0x0D3710


def _claimable(unexpired: ColumnElement[bool]) -> ColumnElement[bool]:
    """Queued, oldest queued of its repo+env, nothing running or waiting there, and not locked
    (``unexpired``: which lock rows still hold)."""
    older = deploys.alias("older")
    running = deploys.alias("running")
    return (
        (deploys.c.state == QUEUED)
        & ~exists().where(
            older.c.repo == deploys.c.repo,
            older.c.env == deploys.c.env,
            older.c.state == QUEUED,
            older.c.id < deploys.c.id,
        )
        & ~exists().where(
            running.c.repo == deploys.c.repo,
            running.c.env == deploys.c.env,
            running.c.state.in_(HOLDING),
        )
        & ~exists().where(locks.c.repo == deploys.c.repo, locks.c.env == deploys.c.env, unexpired)
    )


class SqlStore(
    WaitingRows,
    RootRows,
    ProcessRows,
    PollerLeaseRows,
    ApprovalRows,
    HeadRows,
    AutoDeployRows,
    LockRows,
    LogRows,
    RollbackRows,
    HomeViewRows,
    ChangeListRows,
):
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
        with unavailable_as_store_error(), self._engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with unavailable_as_store_error(), self._engine.connect() as conn:
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
        values = {**new_deploy(request), "owner_id": owner}
        for _ in range(MAX_CREATE_ATTEMPTS):
            try:
                with self._write() as conn:
                    self._serialize(conn, request.repo, request.env)
                    existing = conn.execute(same_active(request)).first()
                    if existing is not None:
                        return deploy_of(existing), False
                    row = conn.execute(insert(deploys).values(values).returning(deploys)).one()
                    self._wake(conn)
                    return deploy_of(row), True
            except IntegrityError:
                # Another process inserted the same request between our read and our insert
                # (PostgreSQL); its row is committed now, the next round returns it.
                continue
        raise RuntimeError(f"could not queue {request.repo}@{request.sha} → {request.env}")

    def get_deploy(self, deploy_id: int) -> Deploy | None:
        """The deploy with that id, or None."""
        with self._read() as conn:
            row = conn.execute(select(deploys).where(deploys.c.id == deploy_id)).first()
        return None if row is None else deploy_of(row)

    def claim_next(
        self, only_id: int | None = None, owner: int | None = None, lease: float | None = None
    ) -> Deploy | None:
        """Atomically move the oldest claimable queued deploy to running (one per repo+env).

        ``owner`` (the claiming process) is recorded in the same write. With ``lease``, a deploy
        queued for another process (a terminal's) is that process's while its lease holds: the
        terminal shows its steps and its Ctrl-C cancels them; if it dies, anyone may run it.
        """
        claimable = _claimable(unexpired(self._database_clock))
        if lease is not None:
            mine = deploys.c.owner_id.is_(None) if owner is None else deploys.c.owner_id == owner
            claimable = claimable & (
                deploys.c.owner_id.is_(None) | mine | ~owner_alive(lease, self._database_clock)
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
                    .values(state=RUNNING, started_at=utc_now(), owner_id=owner, step_pgid=None)
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
                    return deploy_of(row)
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
        return deploy_of(row)

    def finish_deploy(self, deploy_id: int, state: DeployState, error: str | None) -> Deploy:
        """Move a queued or running deploy to a final state; a final one is returned unchanged.

        ``error=None`` keeps any error already recorded.
        """
        if not state.is_final:
            raise ValueError(f"finish_deploy needs a final state, not {state.value}")
        values: dict[str, object] = {
            "state": state.value,
            "finished_at": utc_now(),
            "waiting_for": None,
            "recheck_at": None,
        }
        if error is not None:
            values["error"] = error
        with self._write() as conn:
            row = conn.execute(
                update(deploys)
                .where(deploys.c.id == deploy_id, deploys.c.state.in_(ACTIVE))
                .values(**values)
                .returning(deploys)
            ).first()
            if row is None:
                row = conn.execute(select(deploys).where(deploys.c.id == deploy_id)).first()
            else:
                self._wake(conn)
        if row is None:
            raise UnknownDeploy(f"There is no deploy #{deploy_id}.")
        return deploy_of(row)

    def cancel_queued(self, deploy_id: int) -> Deploy | None:
        """Queued → cancelled in one conditional write; None if it was not queued."""
        with self._write() as conn:
            row = conn.execute(
                update(deploys)
                .where(deploys.c.id == deploy_id, deploys.c.state == QUEUED)
                .values(state=DeployState.CANCELLED.value, finished_at=utc_now())
                .returning(deploys)
            ).first()
            if row is not None:
                self._wake(conn)
        return None if row is None else deploy_of(row)

    def request_cancel(self, deploy_id: int) -> Deploy | None:
        """Flag a running deploy for cancellation; None if it was not running."""
        with self._write() as conn:
            row = conn.execute(
                update(deploys)
                .where(deploys.c.id == deploy_id, deploys.c.state == RUNNING)
                .values(cancel_requested=True)
                .returning(deploys)
            ).first()
        return None if row is None else deploy_of(row)

    def record_step(self, deploy_id: int, pgid: int | None) -> bool:
        """Record (or clear) the process group of the deploy's running step.

        False when the deploy is no longer running (another process took it over).
        """
        with self._write() as conn:
            row = conn.execute(
                update(deploys)
                .where(deploys.c.id == deploy_id, deploys.c.state == RUNNING)
                .values(step_pgid=pgid)
                .returning(deploys.c.id)
            ).first()
        return row is not None

    @property
    def _database_clock(self) -> bool:
        """PostgreSQL stamps heartbeats with its own clock: several hosts, one time."""
        return self._engine.dialect.name == "postgresql"

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
            return [deploy_of(r) for r in conn.execute(query)]

    def last_succeeded(self, repo: str, env: str) -> Deploy | None:
        """The newest succeeded deploy of repo+env (deploys of one env run in id order)."""
        found = self.list_deploys(repo, env, [DeployState.SUCCEEDED], limit=1)
        return found[0] if found else None
