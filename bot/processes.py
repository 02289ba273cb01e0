"""This robot process in the store: who it is (host, pid, boot id) and the heartbeat that renews its lease."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from bot.errors import StoreError
from bot.models import ProcessInfo, ProcessKind

log = logging.getLogger(__name__)

BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str:
    """Linux's id of the current boot; without /proc, a stand-in that matches no other process.

    A process group id means something only on the machine and boot that made it: an owner on
    another boot (or an unknown one) never has its recorded group killed.
    """
    try:
        return BOOT_ID_FILE.read_text(encoding="ascii").strip()
    except OSError:
        return f"unknown-{socket.gethostname()}-{os.getpid()}"


def pid_alive(pid: int) -> bool:
    """Whether a process with that id exists on this machine (a reused id reads as alive: the safe side)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user
    except (OverflowError, ValueError):
        return False  # no such id can exist
    return True


def this_process(kind: ProcessKind) -> ProcessInfo:
    """What this process registers as."""
    return ProcessInfo(host=socket.gethostname(), pid=os.getpid(), boot_id=boot_id(), kind=kind)


class Heartbeat:
    """Calls ``beat`` every ``interval`` seconds on its own thread until stopped.

    A StoreError is logged and the next beat tries again: an unreachable database must not end
    the process (its lease runs out on its own, and another process takes its deploys).
    """

    def __init__(self, beat: Callable[[], object], interval: float, name: str) -> None:
        self._beat = beat
        self._interval = interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stopping.wait(self._interval):
            try:
                self._beat()
            except StoreError as exc:
                log.warning("%s: store unavailable, trying again next beat: %s", self._thread.name, exc)
            except Exception:
                log.exception("%s failed; trying again next beat", self._thread.name)


class DatabaseFileWatch:
    """Notices the SQLite file being deleted or replaced while the robot holds it open.

    SQLite goes on writing into an open file that was deleted (or renamed over): every deploy
    recorded from then on lands where no other process and no restart will ever see it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._identity = self._stat()

    def _stat(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return stat.st_dev, stat.st_ino

    def problem(self) -> str | None:
        """One line saying the file is gone or another one, or None while it is the same file."""
        if self._identity is None or self._stat() == self._identity:
            return None
        return f"the database file {self.path} was deleted or replaced while the robot ran; stopping"

    def watch(self, interval: float, on_gone: Callable[[str], None]) -> Heartbeat:
        """A started Heartbeat that checks every ``interval`` s and calls ``on_gone`` once."""
        told = threading.Event()

        def check() -> None:
            problem = self.problem()
            if problem is not None and not told.is_set():
                told.set()
                on_gone(problem)

        beat = Heartbeat(check, interval, "database-file-watch")
        beat.start()
        return beat
