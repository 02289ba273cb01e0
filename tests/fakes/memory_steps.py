"""ScriptedRunner: a StepRunner that plays scripted results (ok, exits, blocks), running nothing."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from bot.models import (
    Step,
    StepResult,
    StepStatus,
    TaskEvent,
)
from bot.ports import StepContext


@dataclass(frozen=True)
class Scripted:
    """One scripted step run: the lines it prints and how it ends.

    ``wait_for_cancel``: after printing, the step blocks until cancelled (then ends CANCELLED)
    or until ``ctx.timeout`` passes (then TIMED_OUT), as a real long step would.
    """

    result: StepResult = field(default_factory=lambda: StepResult(StepStatus.OK, "exited 0", 0))
    lines: tuple[str, ...] = ()
    tasks: tuple[TaskEvent, ...] = ()
    wait_for_cancel: bool = False


def ok(*lines: str) -> Scripted:
    return Scripted(StepResult(StepStatus.OK, "exited 0", 0), lines)


def exits(code: int, *lines: str) -> Scripted:
    return Scripted(StepResult(StepStatus.FAILED, f"exited {code}", code, tuple(lines[-20:])), lines)


def blocks(*lines: str) -> Scripted:
    """A step that runs until it is cancelled (or times out)."""
    return Scripted(lines=lines, wait_for_cancel=True)


class ScriptedRunner:
    """A StepRunner that plays scripted runs in order (the last repeats; none: every step is ok)."""

    def __init__(self, *script: Scripted) -> None:
        self._script = list(script)
        self._lock = threading.Lock()
        self.ran: list[tuple[Step, StepContext]] = []
        self.started = threading.Event()  # set when a step starts (a test waits for it)

    def script(self, *runs: Scripted) -> None:
        with self._lock:
            self._script.extend(runs)

    def run(self, step: Step, ctx: StepContext) -> StepResult:
        with self._lock:
            self.ran.append((step, ctx))
            run = (
                (self._script.pop(0) if len(self._script) > 1 else self._script[0]) if self._script else ok()
            )
        self.started.set()
        for event in run.tasks:
            ctx.on_task(event)
        for line in run.lines:
            ctx.on_output(line)
        if run.wait_for_cancel:
            if ctx.cancel.wait(ctx.timeout):
                return StepResult(StepStatus.CANCELLED, "cancelled")
            return StepResult(StepStatus.TIMED_OUT, f"timed out after {ctx.timeout:g} s")
        if ctx.cancel.is_set():
            return StepResult(StepStatus.CANCELLED, "cancelled")
        return run.result

    @property
    def labels(self) -> list[str]:
        return [step.label for step, _ in self.ran]
