"""`/deploy-status [<repo>] [<env>]`: running, queued, recent deploys and locks."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, BoltContext, Respond

from bot.slack.commands import parse_status
from handlers.command import answer_command


def handle_status_command(ack: Ack, command: dict[str, Any], respond: Respond, context: BoltContext) -> None:
    """ack → parse → one ChatOps call → reply."""
    answer_command(parse_status, ack, command, respond, context)
