"""Plain-text helpers shared by every front end: one line, cut short, user input quoted back."""

from __future__ import annotations

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
