"""Child processes for the bench: a deadline on every run, stdout drained as a pipe reader would."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

READ_SIZE = 1 << 16
STOP_GRACE = 3.0  # SIGTERM first so a robot can stop its own step group before SIGKILL

# Runs argv as its only child and reports that child's wall time and peak RSS. A fresh wrapper
# per run isolates ru_maxrss (RUSAGE_CHILDREN is the max over every child ever waited for);
# VmHWM polling of the direct child alone tells the robot apart from its steps.
_RSS_WRAPPER = r"""
import json, resource, subprocess, sys, time
out, limit, argv = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
start = time.monotonic()
child = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
hwm = 0
while child.poll() is None and time.monotonic() - start < limit:
    try:
        with open(f"/proc/{child.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    hwm = max(hwm, int(line.split()[1]))
    except OSError:
        pass
    time.sleep(0.05)
code = child.wait(timeout=max(0.1, limit - (time.monotonic() - start)))
wall = time.monotonic() - start
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(out, "w") as f:
    json.dump({"wall": wall, "code": code, "ru_maxrss_kb": ru.ru_maxrss, "hwm_kb": hwm,
               "cpu": ru.ru_utime + ru.ru_stime}, f)
sys.exit(code)
"""


@dataclass(frozen=True)
class Drained:
    """One finished (or stopped) run: wall time, exit code, what came out on stdout."""

    wall: float
    returncode: int | None  # None: stopped at the deadline
    newlines: int
    stamped: tuple[tuple[float, str], ...]  # (seconds since start, line), when lines were kept
    marks: dict[bytes, float]  # first arrival (seconds since start) of each marker asked for
    stderr: str


@dataclass(frozen=True)
class Measured:
    """A run inside the RSS wrapper: the drained stdout plus the child's own numbers."""

    drained: Drained
    wall: float
    peak_rss_mb: float  # ru_maxrss over the child and everything it waited for
    child_hwm_mb: float  # VmHWM of the direct child alone (sampled every 50 ms)
    cpu: float  # user + system seconds of the child and its descendants


def run_drained(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    keep_lines: bool = False,
    markers: Sequence[bytes] = (),
) -> Drained:
    """Run argv with stdout on a pipe read until EOF: counted, then kept or dropped.

    ``markers`` are found without splitting lines, so even a 200,000-line run is timed cheaply.
    """
    with tempfile.TemporaryFile() as err:
        start = time.monotonic()
        deadline = start + timeout
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,
        )
        assert proc.stdout is not None
        reader = _Reader(start, keep_lines, markers)
        try:
            timed_out = reader.drain(proc.stdout.fileno(), deadline)
        except BaseException:  # Ctrl-C on the bench: leave no process group behind
            stop_group(proc)
            raise
        proc.stdout.close()
        code: int | None
        if timed_out:
            stop_group(proc)
            code = None
        else:
            try:
                code = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                stop_group(proc)
                code = None
        wall = time.monotonic() - start
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    return Drained(wall, code, reader.newlines, tuple(reader.stamped), reader.marks, stderr)


class _Reader:
    """Reads a pipe to EOF or a deadline: counts lines, stamps markers, optionally keeps lines."""

    def __init__(self, start: float, keep_lines: bool, markers: Sequence[bytes]) -> None:
        self._start = start
        self._keep = keep_lines
        self._markers = list(markers)
        self._overlap = max((len(m) for m in markers), default=1) - 1
        self._tail = b""
        self._partial = b""
        self.newlines = 0
        self.stamped: list[tuple[float, str]] = []
        self.marks: dict[bytes, float] = {}

    def drain(self, fd: int, deadline: float) -> bool:
        """Read until EOF; True when the deadline came first."""
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return True
                if not selector.select(min(left, 1.0)):
                    continue
                chunk = os.read(fd, READ_SIZE)
                if not chunk:
                    return False
                self._take(chunk, time.monotonic() - self._start)

    def _take(self, chunk: bytes, now: float) -> None:
        self.newlines += chunk.count(b"\n")
        if self._markers:
            # A marker may straddle two reads: look at the end of the previous one too.
            window = self._tail + chunk
            for marker in [m for m in self._markers if m in window]:
                self.marks[marker] = now
                self._markers.remove(marker)
            self._tail = window[-self._overlap :] if self._overlap else b""
        if self._keep:
            *lines, self._partial = (self._partial + chunk).split(b"\n")
            self.stamped.extend((now, line.decode("utf-8", "replace")) for line in lines)


def stop_group(
    proc: subprocess.Popen[bytes], grace: float = STOP_GRACE, kill_wait: float = STOP_GRACE
) -> None:
    """TERM the child's group, give it ``grace``, then KILL it and wait ``kill_wait``."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, kill_wait)):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_measured(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    markers: Sequence[bytes] = (),
) -> Measured:
    """run_drained inside a fresh RSS wrapper; the wrapper's own start-up is not in `wall`."""
    with tempfile.TemporaryDirectory(prefix="bench-rss-") as tmp:
        out = Path(tmp) / "rss.json"
        wrapped = [sys.executable, "-c", _RSS_WRAPPER, str(out), str(timeout), *argv]
        drained = run_drained(wrapped, cwd=cwd, env=env, timeout=timeout + 2 * STOP_GRACE, markers=markers)
        try:
            numbers = json.loads(out.read_text())
        except (OSError, ValueError):
            return Measured(drained, drained.wall, float("nan"), float("nan"), float("nan"))
    return Measured(
        drained,
        float(numbers["wall"]),
        numbers["ru_maxrss_kb"] / 1024,
        numbers["hwm_kb"] / 1024,
        float(numbers["cpu"]),
    )
