"""Whether steps can start here: their folder, playbook, inventory and ansible-playbook.

One decision, asked at three moments: by ``robot check``, by the deploy service before it
queues a request, and by each step runner just before its step (a folder deleted after the
request is still a StepSetupError). Imports neither ansible_runner nor the step runners.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from bot.errors import StepSetupError
from bot.models import AnsibleStep, Step

if TYPE_CHECKING:
    from bot.config import Settings

NO_ANSIBLE = "ansible-playbook not found on PATH; install ansible-core"


def playbook_env(env: Mapping[str, str]) -> dict[str, str]:
    """The step environment with this interpreter's bin dir first on PATH and colour off."""
    bin_dir = str(Path(sys.executable).parent)
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != bin_dir]
    result = dict(env)
    result["PATH"] = os.pathsep.join([bin_dir, *path])
    result.setdefault("ANSIBLE_NOCOLOR", "1")  # output goes to Slack and logs, not a terminal
    return result


def resolve(folder: Path, path: str) -> Path:
    """A playbook or inventory path: absolute (after ``~``) as written, else inside ``folder``."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else folder / candidate


def inventory_argument(folder: Path, inventory: str | None) -> str | None:
    """What ansible-playbook gets as inventory: a path resolved against the folder, or a "h1,h2," list."""
    if not inventory or "," in inventory:
        return inventory or None
    return str(resolve(folder, inventory))


def folder_missing(folder: Path) -> StepSetupError:
    """The error of a step whose working folder is not there."""
    return StepSetupError(f"folder {folder} does not exist")


def preflight(folder: Path, steps: Iterable[Step], environ: Mapping[str, str]) -> None:
    """Raise a one-line StepSetupError unless every step can start in ``folder`` with ``environ``."""
    if not folder.is_dir():
        raise folder_missing(folder)
    for step in steps:
        if isinstance(step, AnsibleStep):
            _ansible_ready(folder, step, environ)


def _ansible_ready(folder: Path, step: AnsibleStep, environ: Mapping[str, str]) -> None:
    playbook = resolve(folder, step.playbook)
    if not playbook.is_file():
        raise StepSetupError(f"playbook {playbook} does not exist")
    if step.inventory and "," not in step.inventory:
        inventory = resolve(folder, step.inventory)
        if not inventory.exists():
            raise StepSetupError(f"inventory {inventory} does not exist")
    if shutil.which("ansible-playbook", path=playbook_env(environ)["PATH"]) is None:
        raise StepSetupError(NO_ANSIBLE)


def problem(folder: Path, steps: Iterable[Step], environ: Mapping[str, str]) -> str | None:
    """preflight's verdict as a value: None when the steps can start, else the one-line reason."""
    try:
        preflight(folder, steps, environ)
    except StepSetupError as exc:
        return str(exc)
    return None


def environment_problem(
    settings: Settings, repo: str, env_name: str, environ: Mapping[str, str]
) -> str | None:
    """Why a configured environment's steps cannot start here, or None when they can."""
    env = settings.repos[repo].environments[env_name]
    # The steps see the environment's own `env:` over the robot's, PATH included.
    return problem(settings.folder(env), env.steps(), {**environ, **env.env})


def blocked(repo: str, env_name: str, reason: str) -> StepSetupError:
    """A setup problem as told to the person deploying: which environment it stops, and why."""
    return StepSetupError(f"{repo} {env_name}: {reason.rstrip('.')}.")


def environment_preflight(settings: Settings, repo: str, env_name: str, environ: Mapping[str, str]) -> None:
    """Raise StepSetupError naming the repo and environment unless its steps can start here."""
    reason = environment_problem(settings, repo, env_name, environ)
    if reason is not None:
        raise blocked(repo, env_name, reason)
