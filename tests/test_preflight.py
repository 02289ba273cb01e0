"""The one preflight: folder, playbook, inventory and ansible-playbook, with the exact messages."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.errors import StepSetupError
from bot.models import AnsibleStep, CommandStep, DeployState, Source
from bot.preflight import (
    NO_ANSIBLE,
    blocked,
    environment_preflight,
    environment_problem,
    inventory_argument,
    playbook_env,
    preflight,
    problem,
)
from bot.wiring import Core
from tests.fakes.github import FakeGitHub
from tests.fakes.memory import RecordingObserver
from tests.support.harness import environ, slack_user, start_core, write_config

COMMANDS = [CommandStep(("git", "pull")), CommandStep(("make", "deploy"))]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """An environment folder with a playbook and an inventory file."""
    target = tmp_path / "infra"
    (target / "deploy").mkdir(parents=True)
    (target / "deploy" / "site.yml").write_text("- hosts: all\n  tasks: []\n")
    (target / "hosts.ini").write_text("localhost ansible_connection=local\n")
    return target


@pytest.fixture
def no_interpreter_ansible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An interpreter whose bin dir holds no ansible-playbook (as a Python outside the venv)."""
    bin_dir = tmp_path / "python-bin"
    bin_dir.mkdir()
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))


@pytest.fixture
def empty_path(tmp_path: Path) -> dict[str, str]:
    """A step environment whose PATH is one empty directory."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    return {"PATH": str(empty)}


@pytest.fixture
def ansible_path(tmp_path: Path) -> dict[str, str]:
    """A step environment whose PATH holds a fake executable ansible-playbook."""
    bin_dir = tmp_path / "ansible-bin"
    bin_dir.mkdir()
    fake = bin_dir / "ansible-playbook"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    return {"PATH": str(bin_dir)}


def raised(folder: Path, steps: list[CommandStep] | list[AnsibleStep], env: dict[str, str]) -> str:
    """preflight's message; also checks that the value-returning wrapper says the same."""
    with pytest.raises(StepSetupError) as info:
        preflight(folder, steps, env)
    message = str(info.value)
    assert problem(folder, steps, env) == message
    assert "\n" not in message
    return message


def test_missing_folder(tmp_path: Path, empty_path: dict[str, str]) -> None:
    gone = tmp_path / "srv" / "api"
    assert raised(gone, COMMANDS, empty_path) == f"folder {gone} does not exist"
    step = [AnsibleStep("site.yml")]
    assert raised(gone, step, empty_path) == f"folder {gone} does not exist"


def test_a_file_is_not_a_folder(tmp_path: Path) -> None:
    file = tmp_path / "checkout"
    file.write_text("")
    assert raised(file, COMMANDS, {}) == f"folder {file} does not exist"


def test_missing_playbook(folder: Path, ansible_path: dict[str, str]) -> None:
    step = [AnsibleStep("deploy/nope.yml", "hosts.ini")]
    assert raised(folder, step, ansible_path) == f"playbook {folder / 'deploy' / 'nope.yml'} does not exist"


def test_missing_inventory(folder: Path, ansible_path: dict[str, str]) -> None:
    step = [AnsibleStep("deploy/site.yml", "hosts-missing")]
    assert raised(folder, step, ansible_path) == f"inventory {folder / 'hosts-missing'} does not exist"


@pytest.mark.usefixtures("no_interpreter_ansible")
def test_inventory_as_a_host_list_is_not_a_path(folder: Path, ansible_path: dict[str, str]) -> None:
    step = AnsibleStep("deploy/site.yml", "host1,host2,")
    preflight(folder, [step], ansible_path)
    assert inventory_argument(folder, step.inventory) == "host1,host2,"
    assert inventory_argument(folder, "hosts.ini") == str(folder / "hosts.ini")
    assert inventory_argument(folder, None) is None


@pytest.mark.usefixtures("no_interpreter_ansible")
def test_ansible_playbook_missing_from_path(folder: Path, empty_path: dict[str, str]) -> None:
    step = [AnsibleStep("deploy/site.yml", "hosts.ini")]
    assert raised(folder, step, empty_path) == "ansible-playbook not found on PATH; install ansible-core"
    assert NO_ANSIBLE == "ansible-playbook not found on PATH; install ansible-core"


def test_checks_run_in_order_folder_then_playbook(tmp_path: Path, empty_path: dict[str, str]) -> None:
    (tmp_path / "present").mkdir()
    step = [AnsibleStep("nope.yml", "nope.ini")]
    assert raised(tmp_path / "absent", step, empty_path).startswith("folder ")
    assert raised(tmp_path / "present", step, empty_path).startswith("playbook ")


@pytest.mark.usefixtures("no_interpreter_ansible")
def test_all_good_commands_need_no_ansible(folder: Path, empty_path: dict[str, str]) -> None:
    preflight(folder, COMMANDS, empty_path)
    assert problem(folder, COMMANDS, empty_path) is None
    preflight(folder, [], empty_path)


@pytest.mark.usefixtures("no_interpreter_ansible")
def test_all_good_ansible(folder: Path, ansible_path: dict[str, str]) -> None:
    steps = [AnsibleStep("deploy/site.yml", "hosts.ini"), AnsibleStep(str(folder / "deploy" / "site.yml"))]
    preflight(folder, steps, ansible_path)
    assert problem(folder, steps, ansible_path) is None


def test_the_interpreter_bin_dir_counts_as_on_path(
    folder: Path, empty_path: dict[str, str], ansible_path: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # An interpreter installed next to ansible-playbook (a venv) finds it whatever PATH says.
    monkeypatch.setattr(sys, "executable", str(Path(ansible_path["PATH"]) / "python"))
    preflight(folder, [AnsibleStep("deploy/site.yml")], empty_path)


def test_playbook_and_inventory_paths_may_be_absolute_or_under_home(
    folder: Path, ansible_path: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(folder))
    monkeypatch.setattr(sys, "executable", str(Path(ansible_path["PATH"]) / "python"))
    preflight(folder / "deploy", [AnsibleStep("~/deploy/site.yml", str(folder / "hosts.ini"))], {})
    message = raised(folder / "deploy", [AnsibleStep("~/nope.yml")], {})
    assert message == f"playbook {folder / 'nope.yml'} does not exist"


def test_playbook_env_puts_the_interpreter_bin_first_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", "/opt/robot/bin/python")
    env = playbook_env({"PATH": f"/usr/bin{os.pathsep}/opt/robot/bin{os.pathsep}{os.pathsep}/bin", "A": "1"})
    assert env == {"PATH": "/opt/robot/bin:/usr/bin:/bin", "A": "1", "ANSIBLE_NOCOLOR": "1"}
    assert playbook_env({"ANSIBLE_NOCOLOR": "0"})["ANSIBLE_NOCOLOR"] == "0"
    assert playbook_env({})["PATH"] == "/opt/robot/bin"


def test_blocked_names_the_environment_in_one_sentence() -> None:
    assert str(blocked("acme/api", "production", "folder /srv does not exist")) == (
        "acme/api production: folder /srv does not exist."
    )
    assert str(blocked("acme/api", "staging", "The command is empty.")) == (
        "acme/api staging: The command is empty."
    )


CONFIG = """
github: {token: t}
repos:
  acme/api:
    environments:
      staging: {folder: checkout, commands: [[git, pull]]}
      production: {folder: gone, commands: [[git, pull]]}
  acme/infra:
    folder: infra
    ansible_playbook: deploy/site.yml
    ansible_hosts: "host1,host2,"
    env: {PATH: "%s"}
"""


@pytest.mark.usefixtures("no_interpreter_ansible")
def test_a_configured_environment_is_checked_with_its_own_path(
    tmp_path: Path, folder: Path, empty_path: dict[str, str], ansible_path: dict[str, str]
) -> None:
    (tmp_path / "checkout").mkdir()
    config = tmp_path / "robot.yaml"
    config.write_text(CONFIG % ansible_path["PATH"])
    settings = load_settings(config, {})

    assert environment_problem(settings, "acme/api", "staging", empty_path) is None
    assert environment_problem(settings, "acme/infra", "production", empty_path) is None
    assert environment_problem(settings, "acme/api", "production", empty_path) == (
        f"folder {tmp_path / 'gone'} does not exist"
    )
    with pytest.raises(StepSetupError) as info:
        environment_preflight(settings, "acme/api", "production", empty_path)
    assert str(info.value) == f"acme/api production: folder {tmp_path / 'gone'} does not exist."

    config.write_text(CONFIG % empty_path["PATH"])
    settings = load_settings(config, {})
    assert environment_problem(settings, "acme/infra", "production", ansible_path) == NO_ANSIBLE


# --- a folder removed between request and run (real core, fake GitHub on loopback) ---------


@pytest.fixture
def core_for(tmp_path: Path, github: FakeGitHub) -> Iterator[tuple[Core, Path]]:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    github.add_repo("acme/api")
    envs = {"production": {"folder": str(checkout), "commands": [["true"]]}}
    config = write_config(tmp_path, github.url, {"acme/api": {"environments": envs}})
    core = start_core(config, RecordingObserver(), environ())
    yield core, checkout
    core.service.stop(timeout=10)
    core.close()


@pytest.mark.slow  # the real core against the loopback fake GitHub
def test_folder_removed_after_the_request_fails_the_deploy_naming_it(
    core_for: tuple[Core, Path], github: FakeGitHub
) -> None:
    core, checkout = core_for
    deploy, created = core.service.request("acme/api", user=slack_user("U1"), source=Source.COMMAND)
    assert created
    checkout.rmdir()

    final = core.service.run_one(deploy.id, threading.Event())

    assert final.state is DeployState.FAILED
    assert final.error == f"acme/api production: folder {checkout} does not exist."
    (deployment,) = github.deployments("acme/api")
    assert deployment.statuses[-1]["body"]["state"] == "error"
    assert f"folder {checkout} does not exist" in core.store.read_log(deploy.id)
