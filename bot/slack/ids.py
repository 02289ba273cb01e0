"""Action ids and button values shared by the Block Kit builders and the action routing table."""

from __future__ import annotations

import json
import re
from typing import Any

from bot.errors import BadCommand, InvalidRef
from bot.validation import ENV_NAME, check_ref, is_valid_repo_name

CANCEL_ACTION = "deploy_cancel"
APPROVE_ACTION = "deploy_approve"
REJECT_ACTION = "deploy_reject"
DEPLOY_ACTION = "deploy_from_announcement"
# Slack wants action_ids unique within a message, so each Deploy button is `deploy_from_announcement:<env>`;
# the router registers this pattern rather than the bare id.
DEPLOY_ACTION_PATTERN = re.compile(rf"^{DEPLOY_ACTION}(?::[A-Za-z0-9._-]{{1,64}})?$")
MAX_VALUE = 2000
_SHA = re.compile(r"[0-9a-f]{40}")
_DEPLOY_ID = re.compile(r"[1-9][0-9]{0,17}")
_DEPLOY_KEYS = {"repo", "env", "sha"}
_BROKEN = "This Deploy button is broken or out of date; use `/deploy <repo>@<sha> to <env>` instead."


def deploy_action_id(env: str) -> str:
    """The action_id of the Deploy button for ``env`` (matches DEPLOY_ACTION_PATTERN)."""
    return f"{DEPLOY_ACTION}:{env}"


def encode_deploy_value(repo: str, env: str, sha: str) -> str:
    """A Deploy button's value naming exactly what to deploy; ValueError when the parts are not valid."""
    if not _valid(repo, env, sha):
        raise ValueError(f"cannot encode a Deploy button for {repo!r} {env!r} {sha!r}")
    return json.dumps({"repo": repo, "env": env, "sha": sha}, separators=(",", ":"), sort_keys=True)


def decode_deploy_value(value: str) -> tuple[str, str, str]:
    """(repo, env, sha) from a Deploy button's value; BadCommand when it is malformed or tampered with."""
    data = _decoded(value, _DEPLOY_KEYS, _BROKEN)
    repo, env, sha = data["repo"], data["env"], data["sha"]
    if not _valid(repo, env, sha):
        raise BadCommand(_BROKEN)
    return repo, env, sha


def _decoded(value: str, keys: set[str], broken: str) -> dict[str, Any]:
    """A button's value as the JSON object it must be: exactly ``keys``, its repo, env and sha
    strings; BadCommand(``broken``) when it is not (the value comes back as the payload holds it)."""
    data = _json_object(value, broken)
    if set(data) != keys:
        raise BadCommand(broken)
    if not all(isinstance(data[key], str) for key in ("repo", "env", "sha")):
        raise BadCommand(broken)
    return data


def _json_object(value: str, broken: str) -> dict[str, Any]:
    """A button's value parsed as a JSON object of bounded size; BadCommand(``broken``) otherwise."""
    if len(value) > MAX_VALUE:
        raise BadCommand(broken)
    try:
        data = json.loads(value)
    except ValueError as err:
        raise BadCommand(broken) from err
    if not isinstance(data, dict):
        raise BadCommand(broken)
    return data


def decode_deploy_id(value: str, action: str) -> int:
    """The deploy id a Cancel / Approve / Reject button carries (refused unless plain digits)."""
    # The value is ours (a deploy id) but comes back as whatever the payload holds; str.isdigit
    # also takes "²" (int() then raises) and 5,000 digits (int() refuses, the store overflows).
    if not _DEPLOY_ID.fullmatch(value):
        raise BadCommand(f"This {action.title()} button is broken; use `/deploy {action} <id>` instead.")
    return int(value)


def _valid(repo: str, env: str, sha: str) -> bool:
    """Full owner/name, an environment word and a full lowercase commit SHA."""
    return is_valid_repo_name(repo) and bool(ENV_NAME.fullmatch(env)) and bool(_SHA.fullmatch(sha))


ROLLBACK_ACTION = "deploy_rollback"
_ROLLBACK_KEYS = {"repo", "env", "sha", "undo"}
_MAX_DEPLOY_ID = 10**18
_BROKEN_ROLLBACK = (
    "This Roll back button is broken or out of date; use `/deploy rollback <repo> to <env>` instead."
)


def encode_rollback_value(repo: str, env: str, sha: str, undo: int) -> str:
    """A Roll back button's value: the repo, env and SHA it deploys and the deploy it undoes.

    ValueError when the parts are not valid.
    """
    if not (_valid(repo, env, sha) and _valid_id(undo)):
        raise ValueError(f"cannot encode a Roll back button for {repo!r} {env!r} {sha!r} #{undo!r}")
    value = {"repo": repo, "env": env, "sha": sha, "undo": undo}
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def decode_rollback_value(value: str) -> tuple[str, str, str, int]:
    """(repo, env, sha, id of the deploy undone) from a Roll back button; BadCommand when malformed."""
    data = _decoded(value, _ROLLBACK_KEYS, _BROKEN_ROLLBACK)
    repo, env, sha, undo = data["repo"], data["env"], data["sha"], data["undo"]
    if not (_valid(repo, env, sha) and _valid_id(undo)):
        raise BadCommand(_BROKEN_ROLLBACK)
    return repo, env, sha, undo


def _valid_id(deploy_id: object) -> bool:
    """A deploy id: a positive int the store can hold (a JSON true is not 1)."""
    return isinstance(deploy_id, int) and not isinstance(deploy_id, bool) and 0 < deploy_id < _MAX_DEPLOY_ID


# ---- App Home ------------------------------------------------------------------------------
# Each environment's buttons sit in an actions block of their own, so these ids are unique
# within their block as Slack requires; the value names the repo + environment (or the deploy).
HOME_DEPLOY_ACTION = "home_deploy"
HOME_CANCEL_ACTION = "home_cancel"
HOME_UNLOCK_ACTION = "home_unlock"
HOME_LOCK_ACTION = "home_lock"
HOME_FILTER_ACTION = "home_repo_filter"
HOME_ROLLBACK_ACTION = "home_rollback"
"""Its value is a Roll back button's (encode_rollback_value), as on a root."""
HOME_APPROVE_ACTION = "home_approve"
HOME_REJECT_ACTION = "home_reject"
# An environment may show several deploys awaiting approval in its one actions block, so each
# Approve and Reject is `home_approve:<deploy id>`; the value is the deploy id.
HOME_APPROVE_PATTERN = re.compile(rf"^{HOME_APPROVE_ACTION}(?::[0-9]{{1,18}})?$")
HOME_REJECT_PATTERN = re.compile(rf"^{HOME_REJECT_ACTION}(?::[0-9]{{1,18}})?$")
HOME_LOCK_VIEW = "home_lock_form"
"""The callback_id of the Lock… modal; its view_submission is routed by it."""
HOME_REASON_BLOCK = "reason"
HOME_DURATION_BLOCK = "duration"
"""The Lock… modal's duration input (block and action id)."""
HOME_ALL_REPOS = "*"
"""The repo filter's option meaning every repo."""
_BROKEN_HOME = "This App Home button is broken or out of date; reopen the robot's Home tab."


def home_deploy_action_id(action: str, deploy_id: int) -> str:
    """The action_id of a Home button acting on one deploy (matches its HOME_*_PATTERN)."""
    return f"{action}:{deploy_id}"


def encode_target(repo: str, env: str, ref: str | None = None) -> str:
    """An App Home button's value: a repo + environment, and for Deploy the ref it deploys."""
    if not (is_valid_repo_name(repo) and ENV_NAME.fullmatch(env)):
        raise ValueError(f"cannot encode an App Home button for {repo!r} {env!r}")
    data = {"repo": repo, "env": env} if ref is None else {"repo": repo, "env": env, "ref": check_ref(ref)}
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def decode_target(value: str) -> tuple[str, str, str | None]:
    """(repo, env, ref or None) from an App Home button's value; BadCommand when malformed."""
    data = _json_object(value, _BROKEN_HOME)
    if not {"repo", "env"} <= set(data) <= {"repo", "env", "ref"}:
        raise BadCommand(_BROKEN_HOME)
    repo, env, ref = data["repo"], data["env"], data.get("ref")
    if not (isinstance(repo, str) and isinstance(env, str) and isinstance(ref, str | None)):
        raise BadCommand(_BROKEN_HOME)
    if not (is_valid_repo_name(repo) and ENV_NAME.fullmatch(env)):
        raise BadCommand(_BROKEN_HOME)
    if ref is not None:
        try:
            check_ref(ref)
        except InvalidRef as err:
            raise BadCommand(_BROKEN_HOME) from err
    return repo, env, ref
