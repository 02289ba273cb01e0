"""Slack mrkdwn text helpers: escaping, bounded code blocks, truncation, mentions, durations."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime

from bot.models import Actor, ActorKind
from bot.text import fmt_duration as fmt_duration  # shared with the terminal; builders import it here

CUT_MARK = "… (cut)"
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")
_FENCE = "```"
# Room kept for the "… N earlier lines cut" line, whatever N is.
_MARKER_ROOM = 48
MIN_CODE_BLOCK = 64


def escape(text: str) -> str:
    """Text made inert for mrkdwn: no mention, link or channel ping survives."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncate(text: str, limit: int, marker: str = CUT_MARK) -> str:
    """``text`` cut to ``limit`` characters with a visible marker, never leaving a half ``<…>`` token."""
    if len(text) <= limit:
        return text
    if limit <= len(marker):
        return marker[:limit]
    head = text[: limit - len(marker)]
    # A cut inside <url|label> or <@U…> would leave broken markup; cut before it instead.
    opened, closed = head.rfind("<"), head.rfind(">")
    if opened > closed:
        head = head[:opened]
    return head + marker


def code_block(lines: Sequence[str], limit: int, max_lines: int | None = None) -> str:
    """The last ``lines`` (at most ``max_lines``) fitting ``limit`` chars: escaped, fenced, cuts marked."""
    if limit < MIN_CODE_BLOCK:
        raise ValueError(f"code_block needs a limit of at least {MIN_CODE_BLOCK} characters")
    flat = [part for line in lines for part in (line.splitlines() or [""])]
    if not flat:
        return f"{_FENCE}(no output){_FENCE}"
    budget = limit - 2 * len(_FENCE) - 2 - _MARKER_ROOM
    kept: list[str] = []
    used = 0
    for line in reversed(flat):
        if max_lines is not None and len(kept) >= max_lines:
            break
        safe = _code_safe(line)
        if used + len(safe) + 1 > budget:
            if not kept:
                # One huge last line: keep its end, which is where the error usually is.
                kept.append("…" + safe[len(safe) - (budget - 2) :])
            break
        kept.append(safe)
        used += len(safe) + 1
    kept.reverse()
    cut = len(flat) - len(kept)
    if cut:
        kept.insert(0, f"… {cut} earlier line{'s' if cut != 1 else ''} cut")
    return _FENCE + "\n" + "\n".join(kept) + "\n" + _FENCE


def _code_safe(line: str) -> str:
    """One output line escaped so it can neither ping anyone nor close the fence."""
    # A zero-width space between backticks keeps ``` in output from ending the block.
    return escape(line.replace("\r", "")).replace("``", "`\u200b`")


def is_user_id(value: str) -> bool:
    """True when ``value`` looks like a Slack user id (U… or W…)."""
    return bool(_USER_ID.fullmatch(value))


def mention(actor: Actor) -> str:
    """How Slack shows who did something: only a Slack user is a mention; the rest is plain text.

    A GitHub login shaped like a Slack id (`U12345`) stays a login: it never notifies that user.
    """
    if actor.kind is ActorKind.SLACK:
        return f"<@{actor.name}>" if is_user_id(actor.name) else escape(actor.name)
    if actor.kind is ActorKind.GITHUB:
        return f"{escape(actor.name)} (GitHub)"
    if actor.kind is ActorKind.CLI:
        return f"{escape(actor.name)} (terminal)"
    return "the robot"


def fmt_time(when: datetime) -> str:
    """A Slack date token: each reader sees it in their own time zone; the fallback is UTC."""
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    stamp = int(aware.timestamp())
    fallback = aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{stamp}^{{date_short_pretty}} {{time}}|{fallback}>"
