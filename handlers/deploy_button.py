"""A **Deploy to <env>** button under a merge announcement."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, BoltContext, Respond

from bot.slack.chatops import ChatOps
from handlers.answer import Answerer
from handlers.payload import action_caller, text_at


def handle_deploy_button(ack: Ack, body: dict[str, Any], respond: Respond, context: BoltContext) -> None:
    """ack → one ChatOps call → ephemeral answer; the value names repo, env and SHA."""
    answerer: Answerer = context["answerer"]
    chatops: ChatOps = context["chatops"]
    value = text_at(body, "actions", 0, "value")
    caller = action_caller(body)
    answerer.click(lambda: chatops.click_deploy(value, caller), ack, respond)
