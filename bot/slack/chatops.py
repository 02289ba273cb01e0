"""What each slash command and button does, as typed calls that return a rendered reply."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.changes import ChangeLists, summarize
from bot.deploys import DeployService
from bot.errors import AccessDenied, BadCommand, BotError
from bot.models import (
    ACTIVE_STATES,
    FINAL_STATES,
    Actor,
    ActorKind,
    ApprovalResult,
    ApprovalView,
    Deploy,
    DeployState,
    EnvironmentView,
    Lock,
    Source,
)
from bot.slack.blocks.approvals import unrecorded_text
from bot.slack.blocks.changes import changes_reply
from bot.slack.blocks.primitives import Block
from bot.slack.blocks.replies import error_text, help_blocks, status_blocks, where_blocks
from bot.slack.blocks.stats import stats_reply
from bot.slack.commands import (
    ApproveCommand,
    CancelCommand,
    ChangesCommand,
    Command,
    DeployCommand,
    HelpCommand,
    LockCommand,
    RejectCommand,
    RollbackCommand,
    StatsCommand,
    StatusCommand,
    UnlockCommand,
    WhereCommand,
)
from bot.slack.ids import decode_deploy_id, decode_deploy_value, decode_rollback_value
from bot.slack.text import escape, fmt_duration, fmt_time
from bot.stats import DoraStats

_RECENT = 30


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
    def error(cls, message: str | BotError) -> Reply:
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
        approval_view: Callable[[Deploy], ApprovalView | None] = lambda deploy: None,
        changes: ChangeLists | None = None,
        stats: DoraStats | None = None,
        lock_changed: Callable[[], None] = lambda: None,
    ) -> None:
        """``lock_changed`` is told after a lock or unlock (App Home republishes)."""
        self._service = service
        self._current_step = current_step
        self._approval_view = approval_view
        self._changes = changes
        self._stats = stats
        self._lock_changed = lock_changed

    # --- commands -------------------------------------------------------------------------

    def command(self, command: Command | StatusCommand, caller: Caller) -> Reply:
        """Run one parsed `/deploy` or `/deploy-status` command."""
        if isinstance(
            command,
            DeployCommand
            | CancelCommand
            | LockCommand
            | UnlockCommand
            | RollbackCommand
            | ApproveCommand
            | RejectCommand,
        ):
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
                lock = self._service.lock(
                    command.repo, command.env, caller.actor, command.reason, command.duration
                )
                self._lock_changed()
                return Reply(_locked_text(lock))
            case UnlockCommand():
                lock = self._service.unlock(command.repo, command.env, caller.actor)
                self._lock_changed()
                return Reply(f"🔓 {lock.repo} {lock.env} is unlocked.")
            case WhereCommand():
                views: list[EnvironmentView] = self._service.where(command.repo)
                text, blocks = where_blocks(views)
                return Reply(text, blocks)
            case RollbackCommand():
                deploy, created = self._service.rollback(
                    command.repo, command.env, user=caller.actor, source=Source.COMMAND
                )
                return self._rollback_queued(deploy, created)
            case ChangesCommand():
                return self._preview(command)
            case HelpCommand():
                text, blocks = help_blocks()
                return Reply(text, blocks)
            case StatusCommand():
                return self._status(command)
            case ApproveCommand():
                return self._approved(self._service.approve(command.deploy_id, caller.actor))
            case RejectCommand():
                return self._rejected(self._service.reject(command.deploy_id, caller.actor, command.reason))
            case StatsCommand():
                return self._dora(command)
        raise TypeError(f"unhandled command {command!r}")

    def click_deploy(self, value: str, caller: Caller) -> Reply:
        """A Deploy button under a merge announcement: deploy exactly the announced SHA."""
        _check_caller(caller)
        repo, env, sha = decode_deploy_value(value)
        deploy, created = self._service.request(
            repo, ref=sha, env=env, user=caller.actor, source=Source.BUTTON, channel=caller.channel
        )
        return self._queued(deploy, created)

    def click_rollback(self, value: str, caller: Caller) -> Reply:
        """A Roll back button on a root: deploy exactly the SHA it names, undoing the deploy it names."""
        _check_caller(caller)
        repo, env, sha, undo = decode_rollback_value(value)
        deploy, created = self._service.rollback_to(
            repo, env, sha, undo, user=caller.actor, source=Source.BUTTON, channel=caller.channel
        )
        return self._rollback_queued(deploy, created)

    def click_cancel(self, value: str, caller: Caller) -> Reply:
        """The Cancel button on a root message."""
        _check_caller(caller)
        return self._cancelled(self._service.cancel(decode_deploy_id(value, "cancel"), caller.actor))

    def click_approve(self, value: str, caller: Caller) -> Reply:
        """The Approve button on a root awaiting approval."""
        _check_caller(caller)
        return self._approved(self._service.approve(decode_deploy_id(value, "approve"), caller.actor))

    def click_reject(self, value: str, caller: Caller) -> Reply:
        """The Reject button on a root awaiting approval (no reason: `/deploy reject` takes one)."""
        _check_caller(caller)
        return self._rejected(self._service.reject(decode_deploy_id(value, "reject"), caller.actor))

    # --- rendering ------------------------------------------------------------------------

    def _approved(self, result: ApprovalResult) -> Reply:
        deploy = result.deploy
        count = len(result.approvals)
        if not result.recorded:
            return Reply(unrecorded_text(result))
        if result.queued:
            return Reply(f"✅ Approved: deploy #{deploy.id} is queued ({count} approval(s)).")
        return Reply(f"✅ Approved ({count} so far): deploy #{deploy.id} needs more approvals.")

    def _rejected(self, deploy: Deploy) -> Reply:
        return Reply(f"{deploy.state.icon} Deploy #{deploy.id} rejected: it will not run.")

    def _queued(self, deploy: Deploy, created: bool) -> Reply:
        what = f"{deploy.repo}@{deploy.ref} ({deploy.short_sha}) → {deploy.env}"
        if created and deploy.state is DeployState.AWAITING_APPROVAL:
            return Reply(
                f"Deploy #{deploy.id} awaits approval: {escape(what)}; its message says who may approve."
            )
        if created:
            return Reply(f"Deploy #{deploy.id} queued: {escape(what)}")
        return Reply(
            f"Deploy #{deploy.id} of {escape(what)} is already {deploy.state.value}; not starting another."
        )

    def _rollback_queued(self, deploy: Deploy, created: bool) -> Reply:
        if not created:
            return self._queued(deploy, created)
        what = f"{deploy.repo} → {deploy.env} back to {deploy.short_sha} (undoing #{deploy.rollback_of})"
        if deploy.state is DeployState.AWAITING_APPROVAL:
            return Reply(
                f"⏪ Rollback #{deploy.id} awaits approval: {escape(what)}; no CI gate (it succeeded "
                "there); its message says who may approve."
            )
        return Reply(f"⏪ Rollback #{deploy.id} queued: {escape(what)}; no CI gate (it succeeded there).")

    def _cancelled(self, deploy: Deploy) -> Reply:
        if deploy.state is DeployState.CANCELLED:
            return Reply(f"⛔ Deploy #{deploy.id} cancelled before it started.")
        return Reply(f"⛔ Cancelling deploy #{deploy.id}: its steps are being stopped.")

    def _preview(self, command: ChangesCommand) -> Reply:
        """`/deploy changes`: one ref lookup and at most one compare (none when cached)."""
        if self._changes is None:
            raise BadCommand("This robot does not work out change lists.")
        preview = self._changes.preview(command.repo, command.env)
        summary = summarize(preview.changes, preview.env)
        url = self._changes.compare_url(preview.repo, preview.changes)
        head = preview.changes.head_sha
        text, blocks = changes_reply(preview.repo, preview.env, preview.branch, head, summary, url)
        return Reply(text, blocks)

    def _dora(self, command: StatsCommand) -> Reply:
        """`/deploy stats`: the DORA figures of the last 30 days, from one store read."""
        if self._stats is None:
            raise BadCommand("This robot does not work out DORA figures.")
        text, blocks = stats_reply(self._stats.report(command.repo, command.env))
        return Reply(text, blocks)

    def _status(self, command: StatusCommand) -> Reply:
        history = self._service.history
        active = history(command.repo, command.env, ACTIVE_STATES, limit=200)
        # A deploy waiting for CI holds its environment like a running one; it says for what.
        running = [d for d in active if d.state in (DeployState.RUNNING, DeployState.WAITING)]
        queued = sorted((d for d in active if d.state is DeployState.QUEUED), key=lambda d: d.id)
        recent = history(command.repo, command.env, FINAL_STATES, limit=_RECENT)
        repo = self._service.target(command.repo).repo if command.repo else None
        steps = {d.id: step for d in running if (step := d.waiting_for or self._current_step(d.id))}
        awaiting = [
            (d, self._approval_view(d))
            for d in sorted(active, key=lambda d: d.id)
            if d.state is DeployState.AWAITING_APPROVAL
        ]
        locks = self._service.locks(repo)
        text, blocks = status_blocks(running, queued, recent, locks, steps, awaiting)
        return Reply(text, blocks)


def _locked_text(lock: Lock) -> str:
    """The answer to `/deploy lock`: what is locked, why, and until when."""
    why = f": {escape(lock.reason)}" if lock.reason else ""
    if lock.expires_at is None:
        return f"🔒 {lock.repo} {lock.env} is locked{why}. Deploys there wait until unlocked."
    lasts = fmt_duration(lock.duration_seconds or 0)
    return (
        f"🔒 {lock.repo} {lock.env} is locked for {lasts}{why}. Deploys there wait until "
        f"{fmt_time(lock.expires_at)}, when it unlocks by itself, or until unlocked."
    )


def _check_caller(caller: Caller) -> None:
    """A payload that names no user (malformed, or not from Slack) may change nothing."""
    if not caller.user:
        raise AccessDenied("Slack did not say who you are, so nothing was done.")
