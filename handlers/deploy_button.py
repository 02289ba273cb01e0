"""A **Deploy to <env>** button under a merge announcement."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, BoltContext, Respond

from bot.slack.chatops import ChatOps
from handlers.click import answer_click


def handle_deploy_button(ack: Ack, body: dict[str, Any], respond: Respond, context: BoltContext) -> None:
    """ack → one ChatOps call → ephemeral answer; the value names repo, env and SHA."""
    answer_click(ChatOps.click_deploy, ack, body, respond, context)
