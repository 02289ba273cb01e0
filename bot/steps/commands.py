"""Runs a command step: an argv list, no shell, streamed line by line, killed as a process group."""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from bot.errors import StepSetupError
from bot.models import LINE_CUT_MARK, MAX_LINE, TAIL_LINES, CommandStep, Step, StepResult, StepStatus
from bot.ports import StepContext
from bot.preflight import folder_missing, preflight
from bot.steps.procs import group_alive, signal_group

READ_SIZE = 64 * 1024  # one pipe's worth per read: few syscalls, bounded buffer
SMALL_CHUNK = 4096
COALESCE_SECONDS = 0.0005
POLL_SECONDS = 0.1  # how soon a cancel or timeout is noticed when the step prints nothing
DRAIN_SECONDS = 2.0  # reading goes on this long after exit while a leftover holds the pipe

_TOKEN = re.compile(r"\{(sha|ref|env|repo)\}")


def substitute(arg: str, deploy_vars: Mapping[str, str]) -> str:
    """Replace the exact tokens {sha} {ref} {env} {repo} in one pass; other braces stay."""
    return _TOKEN.sub(lambda m: deploy_vars.get(f"DEPLOY_{m.group(1).upper()}", ""), arg)


def timed_out_reason(timeout: float) -> str:
    """The one-line reason of a step that hit its timeout."""
    return f"timed out after {timeout:g} s"


class LineSplitter:
    """Turns raw output chunks into decoded lines, cutting each line at MAX_LINE bytes."""

    def __init__(self, emit: Callable[[str], None], tail: deque[str]) -> None:
        self._emit = emit
        self._tail = tail
        self._pending = b""
        self._discarding = False  # inside the cut-off rest of an over-long line

    def feed(self, chunk: bytes) -> None:
        """Emit every complete line in pending + chunk; keep the incomplete rest (bounded)."""
        if self._discarding:
            newline = chunk.find(b"\n")
            if newline < 0:
                return
            chunk = chunk[newline + 1 :]
            self._discarding = False
        data = self._pending + chunk if self._pending else chunk
        last = data.rfind(b"\n")
        if last < 0:
            self._pending = data
        else:
            self._pending = data[last + 1 :]
            # '\n' never occurs inside a UTF-8 sequence, so decoding many lines at once is exact
            lines = data[:last].decode("utf-8", "replace").split("\n")
            # a line of n characters has at most 4n bytes: only very long ones need measuring
            if len(data) > MAX_LINE and max(map(len, lines)) > MAX_LINE // 4:
                lines = [cut_line(line) for line in lines]
            self._send(lines)
        if len(self._pending) > MAX_LINE:
            self._send([cut_line(self._pending[:MAX_LINE].decode("utf-8", "replace"), force=True)])
            self._pending = b""
            self._discarding = True

    def close(self) -> None:
        """Emit the last line when the output did not end with a newline."""
        if self._pending:
            self._send([self._pending.decode("utf-8", "replace")])
            self._pending = b""

    def _send(self, lines: Sequence[str]) -> None:
        emit = self._emit
        for line in lines:
            emit(line)
        self._tail.extend(lines[-TAIL_LINES:])


def cut_line(line: str, force: bool = False) -> str:
    """The line itself, or its first MAX_LINE bytes with a mark when it is longer (or forced)."""
    if not force and len(line) <= MAX_LINE // 4:
        return line
    raw = line.encode("utf-8", "replace")
    if not force and len(raw) <= MAX_LINE:
        return line
    return raw[:MAX_LINE].decode("utf-8", "ignore") + LINE_CUT_MARK


class CommandStepRunner:
    """Runs CommandSteps as real processes in their own session, with timeout and cancel.

    On timeout or cancel the whole process group gets SIGTERM, then SIGKILL after
    ctx.kill_grace. A process the step leaves in the background after a normal exit is left
    alone; its output is read for DRAIN_SECONDS more, then the pipe is closed.
    """

    def run(self, step: Step, ctx: StepContext) -> StepResult:
        """Run the command to completion; on_output is called on this thread, line by line."""
        if not isinstance(step, CommandStep):
            raise TypeError(f"CommandStepRunner cannot run {type(step).__name__}")
        if not step.argv:
            raise StepSetupError("The command is empty.")
        preflight(ctx.folder, [step], ctx.env)
        argv = [step.argv[0], *(substitute(a, ctx.deploy_vars) for a in step.argv[1:])]
        try:
            proc = subprocess.Popen(
                argv,
                cwd=ctx.folder,
                env=dict(ctx.env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                bufsize=0,
            )
        except FileNotFoundError as exc:
            if exc.filename is not None and Path(exc.filename) == ctx.folder:
                raise folder_missing(ctx.folder) from None
            return StepResult(StepStatus.FAILED, f"command not found: {argv[0]}")
        except PermissionError:
            return StepResult(StepStatus.FAILED, f"permission denied: {argv[0]}")
        except OSError as exc:
            return StepResult(StepStatus.FAILED, f"cannot start {argv[0]}: {exc.strerror}")
        try:
            ctx.on_process(proc.pid)  # start_new_session: the child leads its own group
        except BaseException:
            signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        return _Supervisor(proc, ctx).run()


class _Supervisor:
    """Reads one process's output and ends it (TERM, grace, KILL to the group) when asked."""

    def __init__(self, proc: subprocess.Popen[bytes], ctx: StepContext) -> None:
        assert proc.stdout is not None
        self._proc = proc
        self._ctx = ctx
        self._fd = proc.stdout.fileno()
        self._tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._lines = LineSplitter(ctx.on_output, self._tail)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._fd, selectors.EVENT_READ)
        self._eof = False

    def run(self) -> StepResult:
        try:
            stop = self._follow()
            if stop is not None:
                self._terminate()
            self._lines.close()
        except BaseException:
            signal_group(self._proc.pid, signal.SIGKILL)
            raise
        finally:
            self._selector.close()
            assert self._proc.stdout is not None
            self._proc.stdout.close()
        code = self._proc.wait(timeout=10)
        tail = tuple(self._tail)
        if stop is StepStatus.CANCELLED:
            return StepResult(StepStatus.CANCELLED, "cancelled", code, tail)
        if stop is StepStatus.TIMED_OUT:
            return StepResult(StepStatus.TIMED_OUT, timed_out_reason(self._ctx.timeout), code, tail)
        if code == 0:
            return StepResult(StepStatus.OK, "", 0, tail)
        if code < 0:
            reason = f"killed by signal {_signal_name(-code)}"
            return StepResult(StepStatus.FAILED, reason, code, tail)
        return StepResult(StepStatus.FAILED, f"exited {code}", code, tail)

    def _follow(self) -> StepStatus | None:
        """Read until EOF; return why the process must be stopped, or None if it ended by itself."""
        deadline = time.monotonic() + self._ctx.timeout
        exited_at: float | None = None
        while not self._eof:
            now = time.monotonic()
            # A step that ended by itself before a cancel reached it keeps its own result.
            if self._ctx.cancel.is_set() and self._proc.poll() is None:
                return StepStatus.CANCELLED
            if now >= deadline:
                return StepStatus.TIMED_OUT
            if exited_at is None and self._proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > DRAIN_SECONDS:
                break  # a background leftover keeps the pipe open; the step itself is done
            self._read_once(min(POLL_SECONDS, deadline - now))
        while self._proc.poll() is None:  # closed its output but still running
            # Waiting on the process (not on cancel) returns the moment it exits: a child that
            # closed its pipe just before exiting must not cost a whole poll interval.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
            if self._ctx.cancel.is_set() and self._proc.poll() is None:
                return StepStatus.CANCELLED
            if self._proc.poll() is None and time.monotonic() >= deadline:
                return StepStatus.TIMED_OUT
        return None

    def _read_once(self, wait: float) -> None:
        if self._eof or not self._selector.select(max(0.0, wait)):
            return
        chunk = os.read(self._fd, READ_SIZE)
        if chunk:
            self._lines.feed(chunk)
            if len(chunk) < SMALL_CHUNK:
                # an unbuffered writer sends tiny chunks: let a few lines gather first
                time.sleep(COALESCE_SECONDS)
        else:
            self._eof = True

    def _terminate(self) -> None:
        """SIGTERM the group, keep reading for kill_grace, SIGKILL the group, drain (bounded)."""
        pgid = self._proc.pid  # start_new_session made the child its group's leader
        signal_group(pgid, signal.SIGTERM)
        grace_end = time.monotonic() + self._ctx.kill_grace
        while time.monotonic() < grace_end:
            if self._proc.poll() is not None and not group_alive(pgid):
                break
            if self._eof:
                time.sleep(min(POLL_SECONDS / 2, max(0.0, grace_end - time.monotonic())))
            else:
                self._read_once(min(POLL_SECONDS / 2, grace_end - time.monotonic()))
        signal_group(pgid, signal.SIGKILL)
        drain_end = time.monotonic() + DRAIN_SECONDS
        while not self._eof and time.monotonic() < drain_end:
            self._read_once(drain_end - time.monotonic())


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
