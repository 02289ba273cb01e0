"""The one routing table: which listener answers which slash command or action."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import App

from bot.slack.ids import (
    APPROVE_ACTION,
    CANCEL_ACTION,
    DEPLOY_ACTION_PATTERN,
    HOME_APPROVE_PATTERN,
    HOME_CANCEL_ACTION,
    HOME_DEPLOY_ACTION,
    HOME_FILTER_ACTION,
    HOME_LOCK_ACTION,
    HOME_LOCK_VIEW,
    HOME_REJECT_PATTERN,
    HOME_ROLLBACK_ACTION,
    HOME_UNLOCK_ACTION,
    REJECT_ACTION,
    ROLLBACK_ACTION,
)
from handlers.app_home import (
    handle_app_home_opened,
    handle_home_approve,
    handle_home_cancel,
    handle_home_deploy,
    handle_home_filter,
    handle_home_lock,
    handle_home_lock_submit,
    handle_home_reject,
    handle_home_rollback,
    handle_home_unlock,
)
from handlers.approve_button import handle_approve_button
from handlers.cancel_button import handle_cancel_button
from handlers.deploy_button import handle_deploy_button
from handlers.deploy_command import handle_deploy_command
from handlers.reject_button import handle_reject_button
from handlers.rollback_button import handle_rollback_button
from handlers.status_command import handle_status_command

DEPLOY_COMMAND = "/deploy"
STATUS_COMMAND = "/deploy-status"


@dataclass(frozen=True)
class Route:
    """One listener: a slash command name, an action id (string or pattern), an event type or a
    view's callback_id."""

    kind: str  # "command" | "action" | "event" | "view"
    matcher: str | re.Pattern[str]
    listener: Callable[..., Any]


ROUTES = (
    Route("command", DEPLOY_COMMAND, handle_deploy_command),
    Route("command", STATUS_COMMAND, handle_status_command),
    Route("action", CANCEL_ACTION, handle_cancel_button),
    Route("action", DEPLOY_ACTION_PATTERN, handle_deploy_button),
    Route("action", ROLLBACK_ACTION, handle_rollback_button),
    Route("action", APPROVE_ACTION, handle_approve_button),
    Route("action", REJECT_ACTION, handle_reject_button),
    Route("event", "app_home_opened", handle_app_home_opened),
    Route("action", HOME_DEPLOY_ACTION, handle_home_deploy),
    Route("action", HOME_CANCEL_ACTION, handle_home_cancel),
    Route("action", HOME_UNLOCK_ACTION, handle_home_unlock),
    Route("action", HOME_LOCK_ACTION, handle_home_lock),
    Route("action", HOME_FILTER_ACTION, handle_home_filter),
    Route("action", HOME_ROLLBACK_ACTION, handle_home_rollback),
    Route("action", HOME_APPROVE_PATTERN, handle_home_approve),
    Route("action", HOME_REJECT_PATTERN, handle_home_reject),
    Route("view", HOME_LOCK_VIEW, handle_home_lock_submit),
)


def register(app: App) -> None:
    """Attach every route to the Bolt app."""
    for route in ROUTES:
        if route.kind == "command":
            app.command(route.matcher)(route.listener)
        elif route.kind == "event":
            app.event(route.matcher)(route.listener)
        elif route.kind == "view":
            app.view(route.matcher)(route.listener)
        else:
            app.action(route.matcher)(route.listener)


def slash_commands() -> set[str]:
    """The slash commands the table answers (checked against manifest.json)."""
    return {str(r.matcher) for r in ROUTES if r.kind == "command"}


def bot_events() -> set[str]:
    """The events the table listens to (checked against manifest.json's bot_events)."""
    return {str(r.matcher) for r in ROUTES if r.kind == "event"}
