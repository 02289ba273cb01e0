"""Runs an Ansible step through ansible-runner; the only module that imports ansible_runner.

How the playbook's environment is built: ansible-runner's RunnerConfig seeds the child's
environment with ``os.environ`` (the robot's own, tokens included) and then applies
``envvars``. So this module builds the RunnerConfig itself (the documented
``RunnerConfig(...)`` / ``prepare()`` / ``Runner(config=rc)`` use), then drops from
``rc.env`` every variable that came only from ``os.environ`` and is not in ``ctx.env``; what
ansible-runner adds for itself (its callback plugin, artifact dir) stays. Nothing secret is
put on the command line: extravars and settings are files in a fresh private data dir
(mode 0700, removed after the run). The event handler returns False, so ansible-runner keeps
no per-event artifact files; no status handler is given, as status data carries the env.

Stopping: ansible-runner calls ``cancel_callback`` every ``pexpect_timeout`` seconds (set to
POLL_SECONDS here) and on True SIGKILLs the playbook's process group at once. That alone is
not enough: ansible-core's workers call ``setsid()``, so a task's processes live in other
groups and would survive. So the callback, before it answers True, stops the run itself:
it finds every process whose arguments name this run's private data dir (ansible-playbook
and its forked workers), SIGTERMs their groups (ansible's own handlers pass it on), waits up
to ``ctx.kill_grace``, and SIGKILLs what is left. The step timeout goes through the same
callback (float seconds, and we know whether it was a cancel or a timeout) rather than
ansible-runner's integer ``timeout``. Passing a callback also keeps ansible-runner off
SIGINT/SIGTERM. Its first calls also find ansible-playbook's process group (by the same private
dir argument) and report it through ``ctx.on_process``, for whoever must reap it should this
robot die.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bot.errors import StepSetupError
from bot.models import TAIL_LINES, AnsibleStep, Step, StepResult, StepStatus, TaskEvent, TaskStatus
from bot.ports import StepContext
from bot.preflight import inventory_argument, playbook_env, preflight, resolve
from bot.steps.commands import cut_line, timed_out_reason
from bot.steps.procs import groups_of_processes_with_arg, stop_groups

POLL_SECONDS = 0.2  # how often ansible-runner asks whether to stop
STOP_MARGIN_SECONDS = 60.0  # beyond the step timeout, how long to wait for ansible-runner to end

# Set by ansible-runner itself; kept even if the robot's environment happens to hold the same value.
_RUNNER_KEYS = frozenset(
    {
        "ANSIBLE_STDOUT_CALLBACK",
        "ANSIBLE_CALLBACK_PLUGINS",
        "ANSIBLE_RETRY_FILES_ENABLED",
        "ANSIBLE_CACHE_PLUGIN",
        "ANSIBLE_CACHE_PLUGIN_CONNECTION",
        "AWX_ISOLATED_DATA_DIR",
        "RUNNER_OMIT_EVENTS",
        "RUNNER_ONLY_FAILED_EVENTS",
    }
)
_TASK_START = frozenset({"playbook_on_task_start", "playbook_on_handler_task_start"})


def deploy_extravars(deploy_vars: Mapping[str, str]) -> dict[str, str]:
    """DEPLOY_SHA=… → {"sha": …}: the ``deploy`` extravar the playbook sees."""
    return {
        key.removeprefix("DEPLOY_").lower(): value
        for key, value in deploy_vars.items()
        if key.startswith("DEPLOY_")
    }


def _json_default(value: object) -> object:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"extravar value of type {type(value).__name__} is not JSON")


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, default=_json_default)


def _only_step_env(prepared: Mapping[str, str], step_env: Mapping[str, str]) -> dict[str, str]:
    """Drop what ansible-runner copied from the robot's own environment and the step lacks."""
    inherited = os.environ
    return {
        key: value
        for key, value in prepared.items()
        if key in step_env or key in _RUNNER_KEYS or inherited.get(key) != value
    }


class AnsibleStepRunner:
    """Runs AnsibleSteps with ansible-runner in a fresh private data dir per run."""

    def run(self, step: Step, ctx: StepContext) -> StepResult:
        """Run the playbook; on_output and on_task are called from ansible-runner's thread."""
        if not isinstance(step, AnsibleStep):
            raise TypeError(f"AnsibleStepRunner cannot run {type(step).__name__}")
        preflight(ctx.folder, [step], ctx.env)
        playbook = resolve(ctx.folder, step.playbook)
        inventory = inventory_argument(ctx.folder, step.inventory)
        env = playbook_env(ctx.env)
        extravars: dict[str, object] = {**dict(step.extravars)}
        extravars["deploy"] = deploy_extravars(ctx.deploy_vars)
        fresh = tempfile.TemporaryDirectory(prefix="robot-ansible-", ignore_cleanup_errors=True)
        with fresh as tmp:
            private = Path(tmp)
            _write_json(private / "env" / "extravars", extravars)
            # settings only work as a file: a settings= argument is dropped when the file is absent
            _write_json(
                private / "env" / "settings",
                {"pexpect_timeout": POLL_SECONDS, "suppress_output_file": True},
            )
            return _Run(ctx, private).run(playbook, inventory, env)


class _Run:
    """One playbook run: turns ansible-runner events into output lines, task events and a result."""

    def __init__(self, ctx: StepContext, private: Path) -> None:
        self._ctx = ctx
        self._private = private
        self._deadline = time.monotonic() + ctx.timeout
        self._tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._stop: StepStatus | None = None
        self._stopped = False
        self._reported = False
        self._error: BaseException | None = None
        self._failed: tuple[str, str] | None = None  # (task, host) of the first real failure
        self._unreachable: list[str] = []

    def run(self, playbook: Path, inventory: str | None, env: dict[str, str]) -> StepResult:
        from ansible_runner import ConfigurationError, Runner, RunnerConfig

        try:
            config = RunnerConfig(
                private_data_dir=str(self._private),
                # ansible-playbook runs in the step's folder, so an ansible.cfg there applies
                project_dir=str(self._ctx.folder),
                playbook=str(playbook),
                inventory=inventory,
                envvars=env,
                quiet=True,
            )
            config.prepare()
        except ConfigurationError as exc:
            raise StepSetupError(f"ansible-runner cannot start: {exc}") from None
        config.env = _only_step_env(config.env, env)
        runner = Runner(
            config,
            event_handler=self._on_event,
            cancel_callback=self._should_stop,
        )
        thread = threading.Thread(target=self._guarded, args=(runner.run,), name="ansible-step", daemon=True)
        thread.start()
        hard_end = self._deadline + STOP_MARGIN_SECONDS
        while thread.is_alive() and time.monotonic() < hard_end:
            thread.join(POLL_SECONDS)
        if self._error is not None:
            raise self._error
        if thread.is_alive():
            return StepResult(StepStatus.TIMED_OUT, "ansible-runner did not stop", None, self.tail)
        return self._result(str(runner.status), runner.rc)

    @property
    def tail(self) -> tuple[str, ...]:
        return tuple(self._tail)

    def _guarded(self, target: Callable[[], object]) -> None:
        try:
            target()
        except BaseException as exc:  # handed to the caller's thread, which re-raises it
            self._error = self._error or exc

    def _should_stop(self) -> bool:
        """ansible-runner's cancel_callback: on cancel or timeout, end the playbook's processes."""
        if self._stopped:
            return True
        if not self._reported:
            self._report_group()
        if self._ctx.cancel.is_set():
            self._stop = StepStatus.CANCELLED
        elif time.monotonic() >= self._deadline:
            self._stop = StepStatus.TIMED_OUT
        elif self._error is None:
            return False
        # ansible-playbook and its workers carry the private dir in their arguments (-e @…)
        groups = groups_of_processes_with_arg(str(self._private)) - {os.getpgrp()}
        stop_groups(groups, self._ctx.kill_grace)
        self._stopped = True
        return True

    def _report_group(self) -> None:
        """Tell the caller ansible-playbook's process group, once it shows up.

        Asked at the first callbacks, before ansible's workers (which make groups of their own)
        exist, so the one group found is ansible-playbook's.
        """
        groups = groups_of_processes_with_arg(str(self._private)) - {os.getpgrp()}
        if groups:
            self._reported = True
            try:
                self._ctx.on_process(min(groups))
            except Exception as exc:  # a caller's callback broke: stop the playbook, re-raise later
                self._error = self._error or exc

    def _on_event(self, event: dict[str, Any]) -> bool:
        """Forward one event; False tells ansible-runner not to keep it as an artifact file."""
        try:
            self._forward(event)
        except Exception as exc:  # a caller's callback broke: stop the playbook, re-raise later
            self._error = self._error or exc
        return False

    def _forward(self, event: dict[str, Any]) -> None:
        stdout = event.get("stdout")
        if stdout:
            lines = [cut_line(line) for line in stdout.replace("\r\n", "\n").split("\n")]
            for line in lines:
                self._ctx.on_output(line)
            self._tail.extend(lines)
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        task = str(data.get("task") or data.get("task_action") or "")
        host = str(data.get("host") or "")
        if kind in _TASK_START:
            self._ctx.on_task(TaskEvent(task, TaskStatus.STARTED))
        elif kind == "runner_on_ok":
            changed = bool((data.get("res") or {}).get("changed"))
            status = TaskStatus.CHANGED if changed else TaskStatus.OK
            self._ctx.on_task(TaskEvent(task, status, host))
        elif kind == "runner_on_skipped":
            self._ctx.on_task(TaskEvent(task, TaskStatus.SKIPPED, host))
        elif kind == "runner_on_failed" and not data.get("ignore_errors"):
            self._failed = self._failed or (task, host)
            self._ctx.on_task(TaskEvent(task, TaskStatus.FAILED, host))
        elif kind == "runner_on_unreachable":
            if host not in self._unreachable:
                self._unreachable.append(host)
            self._ctx.on_task(TaskEvent(task, TaskStatus.UNREACHABLE, host))

    def _result(self, status: str, rc: int | None) -> StepResult:
        tail = self.tail
        if self._stop is StepStatus.CANCELLED:
            return StepResult(StepStatus.CANCELLED, "cancelled", rc, tail)
        if self._stop is StepStatus.TIMED_OUT:
            return StepResult(StepStatus.TIMED_OUT, timed_out_reason(self._ctx.timeout), rc, tail)
        if status == "successful" and rc == 0:
            return StepResult(StepStatus.OK, "", 0, tail)
        if self._unreachable:
            return StepResult(StepStatus.FAILED, _unreachable_reason(self._unreachable), rc, tail)
        if self._failed is not None:
            task, host = self._failed
            return StepResult(StepStatus.FAILED, f"task `{task}` failed on host {host}", rc, tail)
        return StepResult(StepStatus.FAILED, f"ansible-playbook exited {rc}", rc, tail)


def _unreachable_reason(hosts: list[str]) -> str:
    if len(hosts) == 1:
        return f"host {hosts[0]} unreachable"
    shown = ", ".join(hosts[:3])
    more = f" and {len(hosts) - 3} more" if len(hosts) > 3 else ""
    return f"hosts {shown}{more} unreachable"
