"""Hides secrets in text the robot writes (store, terminal, Slack)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from bot.config import SECRET_NAME

MASK = "••••••"
# Shorter values are too likely to collide with ordinary words to be worth masking.
_MIN_SECRET_LENGTH = 6


class Redactor:
    """Replaces every known secret value by a mask; one compiled pattern, longest first."""

    def __init__(self, secrets: Iterable[str]) -> None:
        values = sorted({s for s in secrets if len(s) >= _MIN_SECRET_LENGTH}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, values))) if values else None

    @classmethod
    def for_environment(cls, secrets: Iterable[str], environ: Mapping[str, str]) -> Redactor:
        """Config secrets plus the values of environment variables named like secrets."""
        from_env = (v for k, v in environ.items() if SECRET_NAME.search(k))
        return cls([*secrets, *from_env])

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)
