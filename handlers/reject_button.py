"""The Reject button on a root awaiting approval."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, BoltContext, Respond

from bot.slack.chatops import ChatOps
from handlers.click import answer_click


def handle_reject_button(ack: Ack, body: dict[str, Any], respond: Respond, context: BoltContext) -> None:
    """ack → one ChatOps call → ephemeral answer; the value is the deploy id."""
    answer_click(ChatOps.click_reject, ack, body, respond, context)
