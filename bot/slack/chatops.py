"""What each slash command and button does, as typed calls that return a rendered reply."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.deploys import DeployService
from bot.errors import AccessDenied, BadCommand
from bot.models import (
    ACTIVE_STATES,
    FINAL_STATES,
    Actor,
    ActorKind,
    Deploy,
    DeployState,
    EnvironmentView,
    Source,
)
from bot.slack.blocks.primitives import Block
from bot.slack.blocks.replies import error_text, help_blocks, status_blocks, where_blocks
from bot.slack.commands import (
    CancelCommand,
    Command,
    DeployCommand,
    HelpCommand,
    LockCommand,
    StatusCommand,
    UnlockCommand,
    WhereCommand,
)
from bot.slack.ids import decode_deploy_value
from bot.slack.text import escape

_RECENT = 30
_CANCEL_VALUE = re.compile(r"[1-9][0-9]{0,17}")


@dataclass(frozen=True)
class Caller:
    """Who acted, and where (the channel is where a button was clicked or a command typed)."""

    user: str
    channel: str | None = None
    message_ts: str | None = None

    @property
    def actor(self) -> Actor:
        """The caller as the service knows them: a Slack user."""
        return Actor(ActorKind.SLACK, self.user)


@dataclass(frozen=True)
class Reply:
    """An ephemeral answer: fallback text and optional blocks."""

    text: str
    blocks: list[Block] | None = None

    @classmethod
    def error(cls, message: str) -> Reply:
        """A one-line ⚠️ answer: how a BotError (or anything refused) reaches the user."""
        return cls(error_text(message))

    def as_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of Bolt's ack / respond for this answer."""
        answer: dict[str, Any] = {"text": self.text, "response_type": "ephemeral"}
        if self.blocks:
            answer["blocks"] = self.blocks
        return answer


class ChatOps:
    """Turns commands and clicks into deploy-service calls and renders the answers."""

    def __init__(
        self,
        service: DeployService,
        current_step: Callable[[int], str | None] = lambda deploy_id: None,
        lock_changed: Callable[[], None] = lambda: None,
    ) -> None:
        """``lock_changed`` is told after a lock or unlock (App Home republishes)."""
        self._service = service
        self._current_step = current_step
        self._lock_changed = lock_changed

    # --- commands -------------------------------------------------------------------------

    def command(self, command: Command | StatusCommand, caller: Caller) -> Reply:
        """Run one parsed `/deploy` or `/deploy-status` command."""
        if isinstance(command, DeployCommand | CancelCommand | LockCommand | UnlockCommand):
            _check_caller(caller)
        match command:
            case DeployCommand():
                deploy, created = self._service.request(
                    command.repo,
                    ref=command.ref,
                    env=command.env,
                    user=caller.actor,
                    source=Source.COMMAND,
                    force=command.force,
                )
                return self._queued(deploy, created)
            case CancelCommand():
                return self._cancelled(self._service.cancel(command.deploy_id, caller.actor))
            case LockCommand():
                lock = self._service.lock(command.repo, command.env, caller.actor, command.reason)
                self._lock_changed()
                why = f": {escape(lock.reason)}" if lock.reason else ""
                return Reply(f"🔒 {lock.repo} {lock.env} is locked{why}. Deploys there wait until unlocked.")
            case UnlockCommand():
                lock = self._service.unlock(command.repo, command.env, caller.actor)
                self._lock_changed()
                return Reply(f"🔓 {lock.repo} {lock.env} is unlocked.")
            case WhereCommand():
                views: list[EnvironmentView] = self._service.where(command.repo)
                text, blocks = where_blocks(views)
                return Reply(text, blocks)
            case HelpCommand():
                text, blocks = help_blocks()
                return Reply(text, blocks)
            case StatusCommand():
                return self._status(command)
        raise TypeError(f"unhandled command {command!r}")

    def click_deploy(self, value: str, caller: Caller) -> Reply:
        """A Deploy button under a merge announcement: deploy exactly the announced SHA."""
        _check_caller(caller)
        repo, env, sha = decode_deploy_value(value)
        deploy, created = self._service.request(
            repo, ref=sha, env=env, user=caller.actor, source=Source.BUTTON, channel=caller.channel
        )
        return self._queued(deploy, created)

    def click_cancel(self, value: str, caller: Caller) -> Reply:
        """The Cancel button on a root message."""
        _check_caller(caller)
        # The value is ours (a deploy id) but comes back as whatever the payload holds; str.isdigit
        # also takes "²" (int() then raises) and 5,000 digits (int() refuses, the store overflows).
        if not _CANCEL_VALUE.fullmatch(value):
            raise BadCommand("This Cancel button is broken; use `/deploy cancel <id>` instead.")
        return self._cancelled(self._service.cancel(int(value), caller.actor))

    # --- rendering ------------------------------------------------------------------------

    def _queued(self, deploy: Deploy, created: bool) -> Reply:
        what = f"{deploy.repo}@{deploy.ref} ({deploy.short_sha}) → {deploy.env}"
        if created:
            return Reply(f"Deploy #{deploy.id} queued: {escape(what)}")
        return Reply(
            f"Deploy #{deploy.id} of {escape(what)} is already {deploy.state.value}; not starting another."
        )

    def _cancelled(self, deploy: Deploy) -> Reply:
        if deploy.state is DeployState.CANCELLED:
            return Reply(f"⛔ Deploy #{deploy.id} cancelled before it started.")
        return Reply(f"⛔ Cancelling deploy #{deploy.id}: its steps are being stopped.")

    def _status(self, command: StatusCommand) -> Reply:
        history = self._service.history
        active = history(command.repo, command.env, ACTIVE_STATES, limit=200)
        # A deploy waiting for CI holds its environment like a running one; it says for what.
        running = [d for d in active if d.state in (DeployState.RUNNING, DeployState.WAITING)]
        queued = sorted((d for d in active if d.state is DeployState.QUEUED), key=lambda d: d.id)
        recent = history(command.repo, command.env, FINAL_STATES, limit=_RECENT)
        repo = self._service.target(command.repo).repo if command.repo else None
        steps = {d.id: step for d in running if (step := d.waiting_for or self._current_step(d.id))}
        text, blocks = status_blocks(running, queued, recent, self._service.locks(repo), steps)
        return Reply(text, blocks)


def _check_caller(caller: Caller) -> None:
    """A payload that names no user (malformed, or not from Slack) may change nothing."""
    if not caller.user:
        raise AccessDenied("Slack did not say who you are, so nothing was done.")
