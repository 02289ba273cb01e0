"""Locks that expire: each `robot run` releases the locks whose time ran out, and says so once.

Expired locks refuse nothing from the moment they expire (the store's queries judge that); this
only deletes them, records the robot's unlock, tells the channel and wakes what waited. Every
process runs it, and the store's conditional delete gives each lock to exactly one of them.

Cost when idle: ``tick`` runs every ``TICK_SECONDS`` on the robot's scheduler and asks the store
nothing until the soonest expiry it knows of is due; it learns of locks set elsewhere by one
``MIN(expires_at)`` read every ``RESCAN_SECONDS``. A lock set through this process is due at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bot.errors import StoreError
from bot.models import Lock
from bot.ports import LockNotifier, StorePort

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0
"""How often `robot run` looks at its in-memory due time: an expiry is told within this."""
RESCAN_SECONDS = 60.0
"""How often each process asks the store for the soonest expiry (locks set by other processes)."""
RETRY_SECONDS = 10.0
"""After the store failed to answer, the next try."""


class LockExpiry:
    """Releases expired locks when one is due: one store write, then a notice and a wake-up per lock."""

    def __init__(
        self,
        store: StorePort,
        notifier: LockNotifier,
        on_release: Callable[[Lock], None],
        rescan: float = RESCAN_SECONDS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._on_release = on_release
        self._rescan = timedelta(seconds=rescan)
        self._clock = clock
        self._due: datetime | None = None  # None: look at the next tick
        self._due_lock = threading.Lock()  # expect() runs on listener threads, tick() on the scheduler's

    def expect(self, lock: Lock) -> None:
        """A lock was just set here: be due when it expires (no store read needed to learn it)."""
        if lock.expires_at is None:
            return
        with self._due_lock:
            if self._due is None or lock.expires_at < self._due:
                self._due = lock.expires_at

    def tick(self) -> list[Lock]:
        """When due: release what expired, tell each, and work out when next to look; the locks
        this process released (none when not due, or another process got there first)."""
        now = self._clock()
        with self._due_lock:
            if self._due is not None and now < self._due:
                return []
            seen = self._due
        try:
            released = self._store.release_expired_locks()
            soonest = self._store.next_lock_expiry()
        except StoreError as exc:
            log.warning("could not release expired locks, trying again in %g s: %s", RETRY_SECONDS, exc)
            self._set_due(now + timedelta(seconds=RETRY_SECONDS), seen)
            return []
        for lock in released:
            self._tell(lock)
        due = now + self._rescan
        if soonest is not None:
            due = min(due, soonest)
        self._set_due(due, seen)
        return released

    def _set_due(self, due: datetime, seen: datetime | None) -> None:
        with self._due_lock:
            # A lock set here during the store's round trip (expect() moved the due time) may
            # not be in what the store answered.
            self._due = due if self._due == seen or self._due is None else min(due, self._due)

    def _tell(self, lock: Lock) -> None:
        try:
            self._notifier.lock_expired(lock)
        except Exception:
            # The lock is released either way; only the channel missed hearing it.
            log.exception("could not tell that the lock on %s %s expired", lock.repo, lock.env)
        self._on_release(lock)
