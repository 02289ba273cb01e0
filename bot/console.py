"""Live deploy progress in a terminal: steps, output, the current Ansible task, elapsed time."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TYPE_CHECKING, TextIO

from bot.models import Deploy, DeployState, GateResult, StepResult, TaskEvent, TaskStatus
from bot.text import terminal_safe

if TYPE_CHECKING:
    from rich.console import Console
    from rich.status import Status
    from rich.text import Text

    from bot.changes import ChangeLists

# Build output must not drive the terminal: no escape sequences, no carriage-return overwrites.
_FLUSH_SECONDS = 0.1


class _Headline:
    """What the spinner line shows, rendered afresh at each refresh so elapsed time ticks."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.step = "starting"
        self.task = ""

    def __rich__(self) -> Text:
        from rich.text import Text

        elapsed = time.monotonic() - self.started
        task = f" · task: {self.task}" if self.task else ""
        return Text(f"{self.step}{task} · {elapsed:.0f} s")


class ConsoleObserver:
    """A DeployObserver for `robot deploy`; output goes straight to the stream, batched."""

    def __init__(self, deploy_id: int | None = None, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout
        self._console: Console | None = None
        """rich's console on a terminal (spinner, live lines); None: plain writes."""
        # rich (~30 ms to import) only where it may draw: a terminal, or one its variables force.
        if _isatty(self._stream) or os.environ.get("FORCE_COLOR") or os.environ.get("TTY_COMPATIBLE"):
            from rich.console import Console

            console = Console(file=self._stream, highlight=False)
            self._console = console if console.is_terminal else None
        self._deploy_id = deploy_id
        self._headline = _Headline()
        self._status: Status | None = None
        self._pending: list[str] = []
        self._last_flush = time.monotonic()
        self._lock = threading.RLock()
        self._timer: threading.Timer | None = None
        self._change_lists: ChangeLists | None = None
        self._changes_shown = False

    def list_changes(self, changes: ChangeLists) -> None:
        """Before its steps, print what the followed deploy ships (once its worker worked it out)."""
        self._change_lists = changes

    def follow(self, deploy_id: int) -> None:
        """Only this deploy's events are shown (a shared store may carry others)."""
        self._deploy_id = deploy_id

    def log_url(self, deploy: Deploy) -> str | None:
        """A terminal deploy has no page to link to."""
        return None

    def _mine(self, deploy: Deploy) -> bool:
        return self._deploy_id is None or deploy.id == self._deploy_id

    def deploy_changed(self, deploy: Deploy) -> None:
        if not self._mine(deploy):
            return
        if deploy.state is DeployState.RUNNING and self._status is None:
            self._headline = _Headline()
            if self._console is not None:
                self._status = self._console.status(self._headline)
                self._status.start()
            self.line(
                f"🚀 Deploy #{deploy.id} · {deploy.repo}@{deploy.ref} ({deploy.short_sha}) → {deploy.env}"
            )
            self._print_changes(deploy)
        elif deploy.state.is_final:
            self.flush()
            if self._status is not None:
                self._status.stop()
                self._status = None
            took = deploy.duration_seconds
            duration = f" in {took:.1f} s" if took is not None else ""
            why = f": {deploy.error}" if deploy.error else ""
            self.line(f"{deploy.state.icon} {deploy.state.value}{duration}{why}")

    def _print_changes(self, deploy: Deploy) -> None:
        lists = self._change_lists
        if lists is None or self._changes_shown:
            return
        changes = lists.recorded(deploy.id)
        if changes is None:
            return
        from bot.changes import summarize, summary_lines

        self._changes_shown = True
        url = lists.compare_url(deploy.repo, changes)
        for text in summary_lines(summarize(changes, deploy.env), url):
            self.line(text)

    def gate_waiting(self, deploy: Deploy, gate: GateResult) -> None:
        if self._mine(deploy):
            names = ", ".join(f"{c.name} ({c.state.value})" for c in gate.waiting)
            self._headline.step = "waiting for CI"
            self.line(f"⏳ waiting for CI: {names}")

    def step_started(self, deploy: Deploy, index: int, total: int, label: str) -> None:
        if self._mine(deploy):
            self._headline.step = f"step {index}/{total} {label}"
            self._headline.task = ""
            self.line(f"▶ step {index}/{total}: {label}")

    def step_output(self, deploy: Deploy, line: str) -> None:
        if not self._mine(deploy):
            return
        with self._lock:
            self._pending.append("  │ " + terminal_safe(line))
            due = time.monotonic() - self._last_flush >= _FLUSH_SECONDS
            # A burst followed by silence must still show up promptly.
            if not due and self._timer is None:
                self._timer = threading.Timer(_FLUSH_SECONDS, self.flush)
                self._timer.daemon = True
                self._timer.start()
        if due:
            self.flush()

    def task_event(self, deploy: Deploy, event: TaskEvent) -> None:
        if not self._mine(deploy):
            return
        if event.status is TaskStatus.STARTED:
            self._headline.task = event.task
            self.line(f"  ▸ task: {event.task}")
        else:
            mark = "✗" if event.status in (TaskStatus.FAILED, TaskStatus.UNREACHABLE) else "✓"
            self.line(f"    {mark} {event.host}: {event.status.value}")

    def step_finished(self, deploy: Deploy, index: int, result: StepResult) -> None:
        if self._mine(deploy):
            mark = "✓" if result.ok else "✗"
            self.line(f"{mark} step {index}{'' if result.ok else ': ' + result.reason}")

    def line(self, text: str) -> None:
        """One line of our own, after any output still pending."""
        with self._lock:
            self.flush()
            self._write([terminal_safe(text)])

    def flush(self) -> None:
        # Written under the lock so the timer thread and the worker never interleave.
        with self._lock:
            lines, self._pending = self._pending, []
            self._last_flush = time.monotonic()
            timer, self._timer = self._timer, None
            if timer is not None:
                timer.cancel()
            if lines:
                self._write(lines)

    def _write(self, lines: list[str]) -> None:
        if self._console is not None:
            from rich.text import Text

            self._console.print(Text("\n".join(lines)), soft_wrap=True)
        else:
            # Not a terminal: plain writes keep a 200,000-line step cheap.
            self._stream.write("\n".join(lines) + "\n")
            self._stream.flush()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except ValueError:  # closed
        return False
