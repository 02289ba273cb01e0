"""Reading Slack payloads defensively: a missing or mistyped field is empty, never a crash."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.slack.chatops import Caller


def text_at(payload: Any, *path: str | int) -> str:
    """The string at ``path`` inside nested dicts/lists, or "" when absent or not a string."""
    node = _node_at(payload, path)
    return node if isinstance(node, str) else ""


def mapping_at(payload: Any, *path: str | int) -> Mapping[str, Any]:
    """The dict at ``path`` inside nested dicts/lists, or {} when absent or not a dict."""
    node = _node_at(payload, path)
    return node if isinstance(node, Mapping) else {}


def _node_at(payload: Any, path: tuple[str | int, ...]) -> Any:
    """What ``path`` leads to inside nested dicts/lists; None where it leads nowhere."""
    node = payload
    for key in path:
        if isinstance(key, int):
            if not isinstance(node, list) or len(node) <= key:
                return None
        elif not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def command_caller(command: Any) -> Caller:
    """Who typed a slash command, and in which channel."""
    return Caller(text_at(command, "user_id"), text_at(command, "channel_id") or None)


def action_caller(body: Any) -> Caller:
    """Who clicked a button, and on which message."""
    return Caller(
        text_at(body, "user", "id"),
        text_at(body, "channel", "id") or text_at(body, "container", "channel_id") or None,
        text_at(body, "container", "message_ts") or text_at(body, "message", "ts") or None,
    )
