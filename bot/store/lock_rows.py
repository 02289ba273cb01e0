"""SqlStore's locks: lock, unlock, expire (a lock with a duration lets go) and the lock history."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Connection, Insert, Row, delete, func, insert, select

from bot.models import ROBOT, Lock, LockEvent
from bot.store.plumbing import StoreRows
from bot.store.rows import as_utc, lock_of, utc_now
from bot.store.schema import lock_events, locks


class LockRows(StoreRows):
    """The locks half of SqlStore (mixed into it): a lock per repo + env, and who locked and unlocked."""

    def set_lock(
        self, repo: str, env: str, locked_by: str, reason: str, duration: timedelta | None = None
    ) -> Lock:
        """Lock repo+env (until ``duration`` has passed, when given); locking again replaces who,
        why, when and until when."""
        now = lock_clock(self._database_clock)  # one clock for when it was locked and when it lets go
        values: dict[str, object] = {
            "repo": repo,
            "env": env,
            "locked_by": locked_by,
            "reason": reason,
            "locked_at": now,
            "expires_at": None if duration is None else _later(now, duration),
        }
        with self._write() as conn:
            drop_expired(conn, repo, env, self._database_clock)
            row = conn.execute(self._upsert(locks, ("repo", "env"), values).returning(locks)).one()
            conn.execute(_lock_event(row, "locked", locked_by))
        return lock_of(row)

    def get_lock(self, repo: str, env: str) -> Lock | None:
        """The lock on repo+env, or None (also once it has expired)."""
        with self._read() as conn:
            query = select(locks).where(
                locks.c.repo == repo, locks.c.env == env, unexpired(self._database_clock)
            )
            row = conn.execute(query).first()
        return None if row is None else lock_of(row)

    def list_locks(self, repo: str | None = None) -> list[Lock]:
        """Every lock that holds (or one repo's), by repo then environment."""
        query = select(locks).where(unexpired(self._database_clock)).order_by(locks.c.repo, locks.c.env)
        if repo is not None:
            query = query.where(locks.c.repo == repo)
        with self._read() as conn:
            return [lock_of(r) for r in conn.execute(query)]

    def remove_lock(self, repo: str, env: str, unlocked_by: str) -> Lock | None:
        """Unlock repo+env, recording who did; the lock that was removed, or None if there was none.

        A lock that has expired is not there to remove: its release is the robot's to record and tell.
        """
        with self._write() as conn:
            row = conn.execute(
                delete(locks)
                .where(locks.c.repo == repo, locks.c.env == env, unexpired(self._database_clock))
                .returning(locks)
            ).first()
            if row is not None:
                conn.execute(_lock_event(row, "unlocked", unlocked_by))
                self._wake(conn)
        return None if row is None else lock_of(row)

    def release_expired_locks(self) -> list[Lock]:
        """Delete the locks whose time ran out, each recorded as unlocked by the robot; the ones
        this call deleted.

        One conditional delete: of several processes releasing at once, each lock goes to exactly
        one of them (the one to tell the channel). A lock renewed meanwhile no longer matches.
        """
        with self._write() as conn:
            rows = conn.execute(delete(locks).where(_expired(self._database_clock)).returning(locks)).all()
            for row in rows:
                conn.execute(_lock_event(row, "unlocked", str(ROBOT)))
            if rows:
                self._wake(conn)
        return sorted((lock_of(r) for r in rows), key=lambda lock: (lock.repo, lock.env))

    def next_lock_expiry(self) -> datetime | None:
        """When the soonest lock with a duration lets go (None: no lock has one)."""
        with self._read() as conn:
            when: datetime | None = conn.execute(select(func.min(locks.c.expires_at))).scalar()
        return as_utc(when)

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


def lock_clock(database_clock: bool) -> object:
    """Now, as locks are judged: the database's clock on PostgreSQL (one for every host)."""
    return func.now() if database_clock else utc_now()


def unexpired(database_clock: bool) -> ColumnElement[bool]:
    """A lock row that still holds: no duration, or one that has not run out."""
    return locks.c.expires_at.is_(None) | (locks.c.expires_at > lock_clock(database_clock))


def drop_expired(conn: Connection, repo: str, env: str, database_clock: bool) -> None:
    """Remove repo+env's lock if it ran out (the history records the robot's unlock), so a
    new lock replaces it. Only a lock released by ``release_expired_locks`` is told in Slack."""
    row = conn.execute(
        delete(locks)
        .where(locks.c.repo == repo, locks.c.env == env, _expired(database_clock))
        .returning(locks)
    ).first()
    if row is not None:
        conn.execute(_lock_event(row, "unlocked", str(ROBOT)))


def _expired(database_clock: bool) -> ColumnElement[bool]:
    return locks.c.expires_at.is_not(None) & (locks.c.expires_at <= lock_clock(database_clock))


def _later(now: object, duration: timedelta) -> object:
    """``now`` + ``duration`` on the clock ``now`` came from."""
    if isinstance(now, datetime):
        return now + duration
    return func.now() + func.make_interval(0, 0, 0, 0, 0, 0, duration.total_seconds())


def _lock_event(lock: Row[tuple[object, ...]], action: str, actor: str) -> Insert:
    m = lock._mapping
    return insert(lock_events).values(
        repo=m["repo"], env=m["env"], action=action, actor=actor, reason=m["reason"], at=utc_now()
    )
