"""The Ansible step runner with the real ansible-playbook against localhost (connection local)."""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from bot.errors import StepSetupError
from bot.models import AnsibleStep, StepStatus, TaskEvent, TaskStatus
from bot.ports import StepContext
from bot.steps.ansible import AnsibleStepRunner
from bot.steps.dispatch import StepDispatcher
from tests.support.steputil import (
    ROBOT_TOKEN,
    Recorder,
    deploy_vars,
    make_ctx,
    processes_with_arg,
    step_env,
)
from tests.support.wait import wait_for

pytestmark = pytest.mark.slow  # ansible-playbook processes

DATA = Path(__file__).parent / "data" / "ansible"
RUNNER = AnsibleStepRunner()
FAST_ANSIBLE = {
    "ANSIBLE_HOST_KEY_CHECKING": "False",
    "ANSIBLE_RETRY_FILES_ENABLED": "False",
    "ANSIBLE_LOCALHOST_WARNING": "False",
    "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
    "ANSIBLE_DEPRECATION_WARNINGS": "False",
    "ANSIBLE_SSH_RETRIES": "0",
    "ANSIBLE_TIMEOUT": "5",
}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """The environment's folder: a copy of the test playbooks, so relative paths resolve there."""
    target = tmp_path / "deploy"
    shutil.copytree(DATA, target)
    return target


@pytest.fixture
def private_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the runner's private data dirs go (tempfile's documented default-dir setting)."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def ansible_ctx(
    folder: Path, *, timeout: float = 60.0, path: str | None = None, **extra: str
) -> tuple[StepContext, Recorder]:
    dvars = deploy_vars()
    env = step_env(dvars, **FAST_ANSIBLE, **extra)
    if path is not None:
        env["PATH"] = path
    return make_ctx(folder, dvars=dvars, env=env, timeout=timeout)


def test_playbook_runs_with_deploy_vars_extravars_and_task_events(
    folder: Path, tmp_path: Path, private_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", ROBOT_TOKEN)  # the robot's own, not the step's
    out = tmp_path / "release.txt"
    ctx, rec = ansible_ctx(folder, APP_ENV="production")
    step = AnsibleStep(
        playbook="site.yml",
        inventory="hosts.ini",
        extravars=(("tier", "gold"), ("out_file", str(out))),
    )

    result = RUNNER.run(step, ctx)

    assert result.status is StepStatus.OK, (result, rec.lines)
    sha = ctx.deploy_vars["DEPLOY_SHA"]
    assert out.read_text().splitlines() == [
        f"sha={sha} repo=acme/api env=production tier=gold",
        "app_env=production token=",
    ]
    assert rec.tasks == [
        TaskEvent("write release marker", TaskStatus.STARTED),
        TaskEvent("write release marker", TaskStatus.CHANGED, "localhost"),
        TaskEvent("say hello", TaskStatus.STARTED),
        TaskEvent("say hello", TaskStatus.OK, "localhost"),
        TaskEvent("skip me", TaskStatus.STARTED),
        TaskEvent("skip me", TaskStatus.SKIPPED, "localhost"),
    ]
    text = "\n".join(rec.lines)
    assert "TASK [say hello]" in text
    assert '"msg": "hello from acme/api"' in text
    assert "\x1b[" not in text
    assert ROBOT_TOKEN not in text
    assert list(private_root.iterdir()) == []


def test_interpreter_bin_is_put_on_a_path_without_ansible(
    folder: Path, tmp_path: Path, private_root: Path
) -> None:
    out = tmp_path / "release.txt"
    ctx, _ = ansible_ctx(folder, path="/usr/bin:/bin")
    step = AnsibleStep(
        playbook=str(folder / "site.yml"),
        inventory=str(folder / "hosts.ini"),
        extravars=(("tier", "t"), ("out_file", str(out))),
    )

    result = StepDispatcher().run(step, ctx)

    assert result.status is StepStatus.OK, result
    assert out.read_text().startswith("sha=")


def test_failing_task_is_named_and_ignored_failures_are_not(folder: Path, private_root: Path) -> None:
    ctx, rec = ansible_ctx(folder)

    result = RUNNER.run(AnsibleStep(playbook="fail.yml", inventory="hosts.ini"), ctx)

    assert result.status is StepStatus.FAILED
    assert result.reason == "task `migrate database` failed on host localhost"
    failed = [e for e in rec.tasks if e.status is TaskStatus.FAILED]
    assert failed == [TaskEvent("migrate database", TaskStatus.FAILED, "localhost")]
    assert TaskEvent("never reached", TaskStatus.STARTED) not in rec.tasks
    assert any("migration 42 failed" in line for line in result.tail)


def test_unreachable_host_fails_the_step(folder: Path, private_root: Path) -> None:
    ctx, rec = ansible_ctx(folder)
    step = AnsibleStep(
        playbook="site.yml",
        inventory="unreachable.ini",
        extravars=(("tier", "t"), ("out_file", "/dev/null")),
    )

    result = RUNNER.run(step, ctx)

    assert result.status is StepStatus.FAILED
    assert result.reason == "host ghost unreachable"
    assert TaskEvent("write release marker", TaskStatus.UNREACHABLE, "ghost") in rec.tasks


def test_cancel_mid_playbook_kills_the_running_task(folder: Path, private_root: Path) -> None:
    marker = "30.4242"  # sleep's argument: finds the task's process
    ctx, _ = ansible_ctx(folder)

    def cancel_once_sleeping() -> None:
        if wait_for(lambda: bool(processes_with_arg(marker)), timeout=30):
            ctx.cancel.set()

    canceller = threading.Thread(target=cancel_once_sleeping)
    canceller.start()
    step = AnsibleStep(playbook="slow.yml", inventory="hosts.ini", extravars=(("sleep_seconds", marker),))
    result = RUNNER.run(step, ctx)
    canceller.join(5)

    assert result.status is StepStatus.CANCELLED
    assert result.reason == "cancelled"
    assert wait_for(lambda: not processes_with_arg(marker))


def test_timeout_stops_the_playbook(folder: Path, private_root: Path) -> None:
    marker = "31.4242"
    ctx, _ = ansible_ctx(folder, timeout=3)
    groups: list[int] = []
    ctx.on_process = groups.append
    step = AnsibleStep(playbook="slow.yml", inventory="hosts.ini", extravars=(("sleep_seconds", marker),))

    result = RUNNER.run(step, ctx)

    assert result.status is StepStatus.TIMED_OUT
    assert result.reason == "timed out after 3 s"
    assert len(groups) == 1, "ansible-playbook's process group is reported once, as it starts"
    assert wait_for(lambda: not processes_with_arg(marker))
    assert list(private_root.iterdir()) == []


def test_missing_playbook_is_a_setup_error_naming_it(folder: Path) -> None:
    ctx, _ = ansible_ctx(folder)

    with pytest.raises(StepSetupError, match=re.escape("deploy/nope.yml")):
        RUNNER.run(AnsibleStep(playbook="nope.yml", inventory="hosts.ini"), ctx)


def test_missing_inventory_is_a_setup_error_naming_it(folder: Path) -> None:
    ctx, _ = ansible_ctx(folder)

    with pytest.raises(StepSetupError, match=re.escape("deploy/hosts-missing")):
        RUNNER.run(AnsibleStep(playbook="site.yml", inventory="hosts-missing"), ctx)


def test_missing_folder_is_a_setup_error_before_ansible_runner_starts(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    ctx, _ = ansible_ctx(gone)

    with pytest.raises(StepSetupError) as info:
        RUNNER.run(AnsibleStep(playbook="site.yml", inventory="hosts.ini"), ctx)
    assert str(info.value) == f"folder {gone} does not exist"


def test_missing_ansible_playbook_is_a_setup_error(
    folder: Path, tmp_path: Path, private_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An interpreter outside the venv's bin (and a PATH without it) cannot find ansible-playbook.
    interpreter_bin = tmp_path / "python-bin"
    interpreter_bin.mkdir()
    monkeypatch.setattr(sys, "executable", str(interpreter_bin / "python"))
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    ctx, _ = ansible_ctx(folder, path=str(empty))

    with pytest.raises(StepSetupError) as info:
        RUNNER.run(AnsibleStep(playbook="site.yml", inventory="hosts.ini"), ctx)
    assert str(info.value) == "ansible-playbook not found on PATH; install ansible-core"
    assert list(private_root.iterdir()) == []
