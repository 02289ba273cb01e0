"""Build the one Engine per store: SQLite tuned for threads and processes, or PostgreSQL."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from bot.errors import ConfigError

SQLITE_BUSY_SECONDS = 30
_WAL_TRIES = 20
IMMEDIATE = "robot_begin_immediate"
"""Execution option: on SQLite, open the transaction with BEGIN IMMEDIATE (takes the write lock)."""


def shown_url(url: str) -> str:
    """``url`` fit to print: the password masked and the query string (which may carry one) dropped."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "(not a database URL)"
    return parsed.set(query={}).render_as_string(hide_password=True)


def sqlite_path(url: str) -> Path | None:
    """The file a SQLite ``url`` opens (as make_engine resolves it); None for other databases."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database).expanduser().resolve()


def make_engine(url: str) -> Engine:
    """An Engine for ``url``; SQLite paths are made absolute and their folder created."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError("state.url is not a database URL (sqlite:///… or postgresql://…)") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed)
    if backend in ("postgresql", "postgres"):
        return _postgresql_engine(parsed)
    raise ConfigError(f"state.url: unsupported database {backend!r}; use sqlite:/// or postgresql://")


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        raise ConfigError("state.url: SQLite needs a file path, e.g. sqlite:///robot.db")
    path = Path(database).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url.set(database=str(path)),
        connect_args={"timeout": SQLITE_BUSY_SECONDS, "check_same_thread": False},
    )
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: object) -> None:
    # pysqlite's own BEGIN handling skips SELECTs and cannot do IMMEDIATE; we emit BEGIN ourselves
    # (SQLAlchemy's documented recipe), so the driver must stop emitting it.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_SECONDS * 1000}")
        # WAL lets readers run while one writer writes; NORMAL sync is durable enough in WAL
        # and keeps each log append from waiting on an fsync.
        _switch_to_wal(cursor)
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _switch_to_wal(cursor: Any) -> None:
    # Switching a new database to WAL needs an exclusive lock and SQLite answers "database is
    # locked" at once, without the busy timeout, when another connection is switching too
    # (several robots or threads opening a fresh file together): retry briefly.
    for attempt in range(_WAL_TRIES):
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError:
            if attempt == _WAL_TRIES - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def _sqlite_begin(connection: Connection) -> None:
    # A read-then-write transaction that starts DEFERRED can fail with SQLITE_BUSY on upgrade
    # without waiting; IMMEDIATE takes the write lock up front and waits busy_timeout for it.
    immediate = bool(connection.get_execution_options().get(IMMEDIATE, False))
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _postgresql_engine(url: URL) -> Engine:
    # Name the driver: SQLAlchemy 2.0 would otherwise pick psycopg2, which is not a dependency.
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return create_engine(url, pool_pre_ping=True)
