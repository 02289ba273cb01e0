"""Plain-text helpers shared by every front end: one line, cut short, user input quoted back."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

DESCRIPTION_LIMIT = 140
"""GitHub refuses deployment (status) descriptions longer than this."""


def one_line(text: str, limit: int | None = None) -> str:
    """Whitespace runs folded into single spaces; past ``limit`` characters cut with "…".

    ``split()`` folds every line break ``str.splitlines()`` knows (\\v, \\f, \\x1c-\\x1e, \\x85,
    \\u2028…), not just \\n and \\r: the text stays one line whatever it holds.
    """
    flat = " ".join(text.split())
    if limit is None or len(flat) <= limit:
        return flat
    return flat[: limit - 1] + "…"


def shown(text: str, limit: int = 80) -> str:
    """User input quoted back inside backticks: one line, no backticks of its own, bounded."""
    return one_line(text.replace("`", "'"), limit)


def cut_description(text: str) -> str:
    """A deployment or status description GitHub accepts: one line, at most 140 characters."""
    return one_line(text, DESCRIPTION_LIMIT)


# A whole terminal escape sequence (CSI, 8-bit CSI, OSC, or a two-character one), not just its ESC.
_ESCAPE_SEQUENCE = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])|\x9b[0-?]*[ -/]*[@-~]"
)
# Control characters but tab and newline (C0, DEL, C1), and bidirectional overrides, which can
# make a line read as something else than it holds.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: str) -> str:
    """Text that cannot drive a terminal: escape sequences, control and bidi characters removed."""
    return _UNSAFE.sub("", _ESCAPE_SEQUENCE.sub("", text))


def fmt_duration(seconds: float) -> str:
    """A short human duration: "42 s", "3 min 5 s", "2 h 1 min"."""
    total = max(0, round(seconds))
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min" if secs == 0 else f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h" if minutes == 0 else f"{hours} h {minutes} min"


def fmt_remaining(seconds: float) -> str:
    """What is left of a lock: "for 1 h 12 min more"; never "0 s" while any time is left."""
    if seconds <= 0:
        return "expiring now"
    return f"for {fmt_duration(math.ceil(seconds))} more"


def slack_mentions(ids: Sequence[str]) -> str:
    """Slack ids from the config (users U…/W…, user groups S…) as Slack mentions, comma-separated:
    the one way a `deployers`, `force` or `approvers` list is named to Slack users."""
    return ", ".join(f"<@{i}>" if i[:1] in ("U", "W") else f"<!subteam^{i}>" for i in ids)
