"""The one body of both slash command listeners: ack → parse → one ChatOps call → reply."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, BoltContext, Respond

from bot.errors import RequestError
from bot.slack.chatops import ChatOps
from bot.slack.commands import ChangesCommand, Command, StatusCommand
from handlers.answer import Answerer
from handlers.payload import command_caller, text_at

Parser = Callable[[str], Command | StatusCommand]


def answer_command(
    parse: Parser, ack: Ack, command: dict[str, Any], respond: Respond, context: BoltContext
) -> None:
    """Parse the command's text with ``parse``; a parse error is the ack, else ChatOps answers."""
    answerer: Answerer = context["answerer"]
    chatops: ChatOps = context["chatops"]
    try:
        parsed = parse(text_at(command, "text"))
    except RequestError as exc:
        answerer.refuse(exc, ack)
        return
    caller = command_caller(command)
    if isinstance(parsed, ChangesCommand):
        # It asks GitHub: acked first, so Slack's 3 s never wait on GitHub.
        answerer.later(lambda: chatops.command(parsed, caller), ack, respond)
        return
    answerer.command(lambda: chatops.command(parsed, caller), ack, respond)
