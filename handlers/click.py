"""The one body of every button listener: ack at once → one ChatOps call with the value → reply."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, BoltContext, Respond

from bot.slack.chatops import Caller, ChatOps, Reply
from handlers.answer import Answerer
from handlers.payload import action_caller, text_at

Click = Callable[[ChatOps, str, Caller], Reply]
"""A ChatOps method taking the button's value and who clicked (e.g. ``ChatOps.click_cancel``)."""


def answer_click(
    click: Click, ack: Ack, body: dict[str, Any], respond: Respond, context: BoltContext
) -> None:
    """Ack empty at once; the answer to the clicked button's value follows as an ephemeral message."""
    answerer: Answerer = context["answerer"]
    chatops: ChatOps = context["chatops"]
    value = text_at(body, "actions", 0, "value")
    caller = action_caller(body)
    answerer.click(lambda: click(chatops, value, caller), ack, respond)
