"""The robot's one error hierarchy.

Every failure a user can cause or must be told about is a ``BotError``; its ``str()`` is one
line fit to show a person as-is (no traceback, no secrets). Listeners and the CLI catch only
``BotError``; anything else is a bug and goes to the one error hook that logs the traceback.

    BotError
    ├── ConfigError            robot.yaml unreadable or invalid (names file, key path, what is allowed)
    ├── RequestError           a deploy request that cannot be honoured as asked
    │   ├── UnknownRepo        repo not configured / ambiguous short name
    │   ├── UnknownEnvironment env not configured for the repo
    │   ├── InvalidRef         malformed ref, or one GitHub does not know
    │   ├── InvalidRepoName    not owner/name
    │   ├── InvalidDuration    not `30m`, `2h`, `90d`, `1w` (a lock: `90s` … `30d`)
    │   ├── AccessDenied       user not in deployers / force
    │   ├── EnvironmentLocked  someone locked repo+env
    │   ├── UnknownDeploy      no deploy with that id, or not cancellable
    │   └── BadCommand         a slash command that does not parse (or a tampered button value)
    ├── GitHubError            GitHub refused or failed after retries
    │   ├── DeploymentRefused  create-deployment answered 409/422 (reason attached)
    │   └── RateLimited        GitHub asked the poller to wait (retry_after / reset attached)
    ├── StepSetupError         a step cannot start (missing folder, missing ansible-playbook)
    └── StoreError             the database is locked past its timeout, full, or gone
"""

from __future__ import annotations


class BotError(Exception):
    """Base of every error whose message may be shown to a user verbatim."""


class ConfigError(BotError):
    """robot.yaml could not be read or validated."""


class RequestError(BotError):
    """A deploy, lock or cancel request that cannot be honoured as asked."""


class UnknownRepo(RequestError):
    """The repo is not configured, or a short name matches several repos."""


class UnknownEnvironment(RequestError):
    """The environment is not configured for the repo."""


class InvalidRef(RequestError):
    """A ref that is malformed or that GitHub does not know."""


class InvalidRepoName(RequestError):
    """A repo name that is not owner/name."""


class InvalidDuration(RequestError):
    """A duration that is not one the command takes (its message names the valid forms)."""


class AccessDenied(RequestError):
    """The user may not do this (not a deployer, or forcing without the right).

    ``allowed``: the config's Slack ids of who may; the message names them as Slack mentions,
    which a Slack reply keeps live while it escapes everything else.
    """

    def __init__(self, message: str, allowed: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.allowed = allowed


class ApprovalRequired(RequestError):
    """The environment wants approvals the request did not bring (a terminal without --approved-by)."""


class EnvironmentLocked(RequestError):
    """The repo + environment is locked."""


class UnknownDeploy(RequestError):
    """No such deploy, or it is no longer cancellable."""


class BadCommand(RequestError):
    """Command text that does not follow the grammar; the message says what is wrong and what is valid."""


class NothingToRollBack(RequestError):
    """A rollback with no target (or a Roll back button the environment has moved past); says why."""


class GitHubError(BotError):
    """GitHub refused a call or kept failing after retries."""


class DeploymentRefused(GitHubError):
    """GitHub answered create-deployment with 409 or 422; the message carries its reason."""


class RateLimited(GitHubError):
    """GitHub asked the poller to wait: ``retry_after`` seconds from now, or until ``reset`` (epoch)."""

    def __init__(self, message: str, retry_after: float | None, reset: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.reset = reset


class StepSetupError(BotError):
    """A step cannot start: its folder is missing, or ansible-playbook is not installed."""


class StoreError(BotError):
    """The store could not read or write (locked past the busy timeout, disk full, server gone)."""
