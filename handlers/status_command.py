"""`/deploy-status [<repo>] [<env>]`: running, queued, recent deploys and locks."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, BoltContext, Respond

from bot.errors import RequestError
from bot.slack.blocks import error_text
from bot.slack.chatops import ChatOps
from bot.slack.commands import parse_status
from handlers.payload import command_caller, text_at


def handle_status_command(ack: Ack, command: dict[str, Any], respond: Respond, context: BoltContext) -> None:
    """ack → parse → one ChatOps call → reply."""
    chatops: ChatOps = context["chatops"]
    try:
        parsed = parse_status(text_at(command, "text"))
    except RequestError as exc:
        ack(text=error_text(str(exc)), response_type="ephemeral")
        return
    caller = command_caller(command)
    chatops.answer(lambda: chatops.command(parsed, caller), ack, respond)
