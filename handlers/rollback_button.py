"""The **Roll back to <sha>** button on a deploy's root message."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, BoltContext, Respond

from bot.slack.chatops import ChatOps
from handlers.click import answer_click


def handle_rollback_button(ack: Ack, body: dict[str, Any], respond: Respond, context: BoltContext) -> None:
    """ack → one ChatOps call → ephemeral answer; the value names repo, env, SHA and the deploy undone."""
    answer_click(ChatOps.click_rollback, ack, body, respond, context)
