"""SqlStore: the StorePort on SQLAlchemy Core, correct under threads and several processes."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, Insert, Table, func, literal, select
from sqlalchemy.dialects import sqlite

from bot.ports import ChangeFeed
from bot.store import migrate
from bot.store.approval_rows import ApprovalRows
from bot.store.auto_deploy_rows import AutoDeployRows
from bot.store.changes import ChangeListRows
from bot.store.deploy_rows import DeployRows
from bot.store.engine import IMMEDIATE
from bot.store.feed import WAKE_CHANNEL, open_feed
from bot.store.head_rows import HeadRows
from bot.store.home_rows import HomeViewRows
from bot.store.lease_rows import PollerLeaseRows
from bot.store.lock_rows import LockRows
from bot.store.log_rows import LogRows
from bot.store.migrate import SchemaState
from bot.store.plumbing import unavailable_as_store_error
from bot.store.process_rows import ProcessRows
from bot.store.rollback_rows import RollbackRows
from bot.store.root_rows import RootRows
from bot.store.stats import DoraRows
from bot.store.waiting_rows import WaitingRows

# The first key of the two-key advisory locks that serialize queue writes per repo + env
# (two-key locks never collide with one-key ones, such as a poller's).
_QUEUE_LOCK_CLASS = 0x0D3710


class SqlStore(
    DeployRows,
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
    DoraRows,
):
    """The source of truth for deploys, the queue, locks, logs and last-seen heads.

    Each mixin keeps one kind of row (bot/store/*_rows.py, changes.py); this class holds the
    engine and what they share: transactions, the upsert, queue serialization and wake-ups.
    """

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

    @property
    def _database_clock(self) -> bool:
        """PostgreSQL stamps heartbeats and locks with its own clock: several hosts, one time."""
        return self._postgresql
