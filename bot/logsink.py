"""Batches a deploy's output lines into few store writes."""

from __future__ import annotations

import time

from bot.ports import StorePort

# One store write per this many lines or seconds, whichever comes first: a step printing
# 200,000 lines must cost a handful of transactions, not 200,000.
_MAX_LINES = 2000
_MAX_SECONDS = 0.5


class LogSink:
    """Collects (already redacted) lines and appends them to the deploy's log in batches."""

    def __init__(self, store: StorePort, deploy_id: int) -> None:
        self._store = store
        self._deploy_id = deploy_id
        self._lines: list[str] = []
        self._since = time.monotonic()

    def write(self, line: str) -> None:
        self._lines.append(line)
        count = len(self._lines)
        # Reading the clock every line costs more than the append; every 64th line is enough.
        if count >= _MAX_LINES or (count % 64 == 1 and time.monotonic() - self._since >= _MAX_SECONDS):
            self.flush()

    def flush(self) -> None:
        if self._lines:
            self._store.append_log(self._deploy_id, self._lines)
            self._lines = []
        self._since = time.monotonic()
