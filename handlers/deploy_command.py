"""`/deploy …`: parse the text, run the command, answer ephemerally within Slack's deadline."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, BoltContext, Respond

from bot.slack.commands import parse_deploy
from handlers.command import answer_command


def handle_deploy_command(ack: Ack, command: dict[str, Any], respond: Respond, context: BoltContext) -> None:
    """ack → parse → one ChatOps call → reply."""
    answer_command(parse_deploy, ack, command, respond, context)
