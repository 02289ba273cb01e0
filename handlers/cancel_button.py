"""The Cancel button on a deploy's root message."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, BoltContext, Respond

from bot.slack.chatops import ChatOps
from handlers.answer import Answerer
from handlers.payload import action_caller, text_at


def handle_cancel_button(ack: Ack, body: dict[str, Any], respond: Respond, context: BoltContext) -> None:
    """ack → one ChatOps call → ephemeral answer."""
    answerer: Answerer = context["answerer"]
    chatops: ChatOps = context["chatops"]
    value = text_at(body, "actions", 0, "value")
    caller = action_caller(body)
    answerer.click(lambda: chatops.click_cancel(value, caller), ack, respond)
