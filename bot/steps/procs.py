"""Process-group signalling for the step runners (Linux /proc where a finer answer is needed)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send sig to every process of the group; a group that is gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs; zombies awaiting their reaper do not count."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not os.path.isdir("/proc"):
        return True
    # an orphan's zombie may linger until init reaps it; only /proc tells it from a live process
    return any(group == pgid and state != b"Z" for _, group, state in _proc_stats())


def groups_of_processes_with_arg(marker: str) -> set[int]:
    """Process groups of the live processes with an argument containing marker (Linux only)."""
    needle = marker.encode()
    groups: set[int] = set()
    for pid, group, state in _proc_stats():
        if state == b"Z":
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                args = handle.read().split(b"\0")
        except OSError:
            continue  # ended while we looked
        if any(needle in arg for arg in args):
            groups.add(group)
    return groups


def stop_groups(groups: Iterable[int], grace: float, poll: float = 0.05) -> None:
    """SIGTERM the groups, wait up to grace for them to end, then SIGKILL what is left."""
    pending = set(groups)
    for group in pending:
        signal_group(group, signal.SIGTERM)
    end = time.monotonic() + grace
    while pending and time.monotonic() < end:
        time.sleep(poll)
        pending = {group for group in pending if group_alive(group)}
    for group in pending:
        signal_group(group, signal.SIGKILL)


def _proc_stats() -> list[tuple[int, int, bytes]]:
    """(pid, process group, state letter) of every process /proc shows; empty without /proc."""
    try:
        pids = [int(entry.name) for entry in os.scandir("/proc") if entry.name.isdigit()]
    except OSError:
        return []
    stats = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as handle:
                # the command name may hold spaces or ')': the fixed fields follow the last ')'
                fields = handle.read().rpartition(b")")[2].split()
        except OSError:
            continue
        if len(fields) > 2:
            stats.append((pid, int(fields[2]), fields[0]))
    return stats
