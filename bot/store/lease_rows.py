"""SqlStore's merge poller lease: which one robot process polls merges (PostgreSQL: an advisory lock)."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Connection, delete, select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from bot.errors import StoreError
from bot.store.plumbing import StoreRows, unavailable_as_store_error
from bot.store.rows import utc_now
from bot.store.schema import poller_lease

if TYPE_CHECKING:
    from sqlalchemy import Engine

log = logging.getLogger(__name__)

POLLER_LEASE = "merge-poller"
"""The ``poller_lease`` row (SQLite) whose holder polls merges."""
POLLER_LOCK_KEY = 0x6D65726765  # "merge": PostgreSQL's advisory lock key for the merge poller


class PollerLeaseRows(StoreRows):
    """The poller-lease half of SqlStore (mixed into it): lead, keep leading, resign."""

    _engine: Engine
    _leader: Connection | None  # PostgreSQL: the connection holding the poller lock
    _leader_lock: threading.Lock

    def lead_poller(self, process_id: int, lease: float) -> bool:
        """Take or keep the right to poll merges: True while this process holds it.

        PostgreSQL: a session advisory lock held on a connection of its own for as long as this
        process leads; it ends with the connection. SQLite: the ``poller_lease`` row, taken or
        renewed for ``lease`` seconds with one conditional write.
        """
        if self._engine.dialect.name == "postgresql":
            return self._hold_advisory_lock(lease)
        now = utc_now()
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
            with unavailable_as_store_error():
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


def _keepalives(lease: float) -> dict[str, int]:
    """PostgreSQL's TCP keepalive settings that notice a dead client within about ``lease`` s."""
    return {
        "tcp_keepalives_idle": max(1, int(lease / 3)),
        "tcp_keepalives_interval": max(1, int(lease / 6)),
        "tcp_keepalives_count": 3,
    }
