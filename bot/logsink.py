"""Batches a deploy's output lines into few store writes, and bounds what one deploy keeps."""

from __future__ import annotations

import logging
import time
from collections import deque

from bot.errors import StoreError
from bot.ports import StorePort

log = logging.getLogger(__name__)

# One store write per this many lines or seconds, whichever comes first: a step printing
# 200,000 lines must cost a handful of transactions, not 200,000.
_MAX_LINES = 2000
_MAX_SECONDS = 0.5
# While the store refuses writes (disk full, locked), this many lines wait in memory; older ones
# are dropped and the log says how many, rather than failing the deploy or growing unbounded.
_MAX_HELD = 100_000


class LogSink:
    """Collects (already redacted) lines and appends them to the deploy's log in batches.

    A deploy keeps at most ``max_lines``: the first half as they come, then only the last half
    (held here, written at the end after a line saying how many were skipped between), so a
    step printing gigabytes costs neither the robot's memory nor the database's disk.
    """

    def __init__(self, store: StorePort, deploy_id: int, max_lines: int = 20_000) -> None:
        self._store = store
        self._deploy_id = deploy_id
        self._lines: list[str] = []
        self._since = time.monotonic()
        self._dropped = 0
        self._refused = False
        self._head_left = max_lines - max_lines // 2
        self._tail: deque[str] = deque(maxlen=max_lines // 2)
        self._skipped = 0

    def write(self, line: str) -> None:
        if self._head_left <= 0:
            if len(self._tail) == self._tail.maxlen:
                self._skipped += 1
            self._tail.append(line)
            return
        self._head_left -= 1
        self._lines.append(line)
        count = len(self._lines)
        # Reading the clock every line costs more than the append; every 64th line is enough.
        due = count % 64 == 1 and time.monotonic() - self._since >= _MAX_SECONDS
        # While the store refuses writes the size trigger stays off: retrying on every line
        # would copy up to _MAX_HELD lines per line (quadratic). Retries keep the time pace,
        # and the oldest lines are dropped here, _MAX_LINES at a time.
        if due or (count >= _MAX_LINES and not self._refused):
            self.flush()
        elif count > _MAX_HELD + _MAX_LINES:
            self._drop_oldest()

    def close(self) -> None:
        """Write what is held: the marker of skipped lines and the kept last half, if any."""
        if self._skipped:
            self._lines.append(
                f"[… {self._skipped:,} lines skipped: each deploy keeps its first and last lines …]"
            )
        self._lines.extend(self._tail)
        self._tail.clear()
        self._skipped = 0
        self.flush()

    def flush(self) -> None:
        self._since = time.monotonic()
        if not self._lines:
            return
        lines = self._lines
        if self._dropped:
            lines = [f"[log incomplete: {self._dropped} lines lost while the store refused writes]", *lines]
        try:
            self._store.append_log(self._deploy_id, lines)
        except StoreError as exc:
            log.warning(
                "deploy #%s: log write failed, holding %d lines: %s", self._deploy_id, len(lines), exc
            )
            self._refused = True
            self._drop_oldest()
            return
        self._lines = []
        self._dropped = 0
        self._refused = False

    def _drop_oldest(self) -> None:
        excess = len(self._lines) - _MAX_HELD
        if excess > 0:
            self._dropped += excess
            del self._lines[:excess]
