"""Wake-ups across processes: a feed that says, cheaply, when some process changed the queue.

PostgreSQL: LISTEN on a connection of its own; SqlStore sends NOTIFY in the very transaction
that queues, finishes, cancels, parks or unlocks, so a wake-up never arrives before the change
is visible. SQLite: ``PRAGMA data_version`` on a connection of its own, read every 150 ms; it
moves whenever any other connection commits (a heartbeat too: a spurious wake-up costs one
claim query). Neither runs the claim query itself: idle processes stay cheap.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from bot.ports import ChangeFeed

log = logging.getLogger(__name__)

WAKE_CHANNEL = "robot_deploys"
"""The PostgreSQL NOTIFY channel: something in the queue may have become claimable."""
SQLITE_POLL_SECONDS = 0.15
RECONNECT_SECONDS = 1.0


def open_feed(engine: Engine) -> ChangeFeed:
    """The feed fit for ``engine``'s database."""
    if engine.dialect.name == "postgresql":
        return PostgresFeed(engine)
    return SqliteFeed(Path(engine.url.database or ""))


class SqliteFeed:
    """Watches the SQLite file's ``data_version``: a change means another connection committed."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._closed = threading.Event()
        self._conn: sqlite3.Connection | None = None
        self._version = self._read()

    def _read(self) -> int | None:
        try:
            if self._conn is None:
                self._conn = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
            row = self._conn.execute("PRAGMA data_version").fetchone()
            return int(row[0])
        except sqlite3.Error as exc:
            log.warning("store feed: %s", exc)
            self._drop()
            return None

    def wait(self, timeout: float) -> bool:
        """True once something changed (or the feed cannot tell), False after ``timeout`` of quiet."""
        deadline = time.monotonic() + timeout
        while not self._closed.is_set():
            version = self._read()
            if version is None or version != self._version:
                self._version = version
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._closed.wait(min(SQLITE_POLL_SECONDS, remaining))
        return False

    def close(self) -> None:
        self._closed.set()

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None


class PostgresFeed:
    """LISTENs on a connection of its own (taken from the engine, so the same URL and options)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn: Any = None
        self._closed = threading.Event()

    def _connect(self) -> None:
        raw = self._engine.raw_connection()
        conn = raw.driver_connection
        raw.detach()  # ours for good: it sits in LISTEN, never back in the pool
        if conn is None:
            raise RuntimeError("the engine gave no driver connection")
        conn.rollback()
        conn.autocommit = True
        conn.execute(f"LISTEN {WAKE_CHANNEL}")
        self._conn = conn

    def wait(self, timeout: float) -> bool:
        """True once a NOTIFY arrived (or the feed cannot tell), False after ``timeout`` of quiet."""
        if self._closed.is_set():
            return False
        try:
            if self._conn is None:
                self._connect()
                return True  # while not listening, anything may have happened
            for _ in self._conn.notifies(timeout=timeout, stop_after=1):
                return True
            return False
        except Exception as exc:  # psycopg's errors, a dropped socket: listen again shortly
            if not self._closed.is_set():
                log.warning("store feed: %r; listening again in %g s", exc, RECONNECT_SECONDS)
            self._drop()
            self._closed.wait(min(timeout, RECONNECT_SECONDS))
            return True

    def close(self) -> None:
        self._closed.set()
        self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:
                log.debug("store feed: closing: %s", exc)
