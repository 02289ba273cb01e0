"""App Home listeners: the tab opened, its buttons, repo filter and Lock… modal (parse → one HomeOps call)."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, BoltContext

from bot.slack.home import HomeOps
from handlers.payload import mapping_at, text_at


def handle_app_home_opened(event: dict[str, Any], context: BoltContext) -> None:
    """Publish the opener's dashboard (Bolt acks events itself; the Messages tab is not ours to draw)."""
    if text_at(event, "tab") in ("home", ""):
        _home(context).opened(text_at(event, "user"))


def handle_home_deploy(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
    """**Deploy <branch>** (after its confirm dialog): ack, then deploy as the clicker."""
    ack()
    _home(context).deploy(*_clicked(body))


def handle_home_cancel(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
    """**Cancel** on the running (or waiting) deploy of an environment."""
    ack()
    _home(context).cancel(*_clicked(body))


def handle_home_approve(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
    """**Approve #N** on a deploy awaiting approval; the value is the deploy id."""
    ack()
    _home(context).approve(*_clicked(body))


def handle_home_reject(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
    """**Reject #N** (after its confirm dialog); the value is the deploy id."""
    ack()
    _home(context).reject(*_clicked(body))


def handle_home_rollback(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
    """**Roll back to <sha>** (after its confirm dialog); the value names repo, env, SHA, deploy undone."""
    ack()
    _home(context).roll_back(*_clicked(body))


def handle_home_unlock(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
    """**Unlock**."""
    ack()
    _home(context).unlock(*_clicked(body))


def handle_home_lock(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
    """**Lock…**: opens the modal with the click's trigger_id."""
    ack()
    _home(context).open_lock_form(*_clicked(body), text_at(body, "trigger_id"))


def handle_home_filter(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
    """The repo filter's choice."""
    ack()
    _home(context).choose_repo(
        text_at(body, "user", "id"), text_at(body, "actions", 0, "selected_option", "value")
    )


def handle_home_lock_submit(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
    """The Lock… modal submitted: HomeOps acks (closing it, or showing the refusal in it)."""
    _home(context).submit_lock(
        text_at(body, "user", "id"),
        text_at(body, "view", "private_metadata"),
        mapping_at(body, "view", "state", "values"),
        ack,
    )


def _clicked(body: dict[str, Any]) -> tuple[str, str]:
    """(who clicked, the button's value)."""
    return text_at(body, "user", "id"), text_at(body, "actions", 0, "value")


def _home(context: BoltContext) -> HomeOps:
    home: HomeOps = context["home"]
    return home
