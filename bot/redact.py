"""Hides secrets in text the robot writes (store, terminal, Slack, GitHub).

Each secret is masked as written and in the forms a build log is likely to carry it in:
base64 (standard and URL-safe, at each of the three alignments it can have inside a longer
encoded string, e.g. `Authorization: Basic base64(user:token)`), and URL-encoded. A secret
interrupted by carriage returns (progress output) is found too, and a line cut short (the step
runners cut lines at 64 KiB) does not leave the head of a secret at its end.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

from bot.config import SECRET_NAME
from bot.models import LINE_CUT_MARK

MASK = "••••••"
# Shorter values are too likely to collide with ordinary words to be worth masking.
_MIN_SECRET_LENGTH = 6
# The head of a secret left at the end of a cut line is masked from this many characters on.
_MIN_HEAD_LENGTH = 4


def secret_forms(secret: str) -> set[str]:
    """The secret and its encodings that stand for it in text (each at least the minimum length)."""
    raw = secret.encode()
    forms = {secret, quote(secret), quote(secret, safe=""), quote_plus(secret)}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for offset in range(3):
            # Inside a longer base64 string the secret starts at byte offset 0, 1 or 2 of a
            # 3-byte group: encode it at each, keep only the characters that depend on it alone.
            encoded = encode(b"\0" * offset + raw).decode().rstrip("=")
            start = -(-offset * 4 // 3)  # the first character made of the secret's bits only
            end = (offset + len(raw)) * 4 // 3  # the last one; what follows shapes the next
            if end - start >= _MIN_SECRET_LENGTH:
                forms.add(encoded[start:end])
            if offset == 0:
                forms.add(encoded)  # the secret encoded on its own, up to its padding
    return {form for form in forms if len(form) >= _MIN_SECRET_LENGTH}


class Redactor:
    """Replaces every known secret value (and its encodings) by a mask; one compiled pattern."""

    def __init__(self, secrets: Iterable[str]) -> None:
        values = {s for s in secrets if len(s) >= _MIN_SECRET_LENGTH}
        self._secrets = tuple(sorted(values, key=len, reverse=True))
        forms = {f for s in values for f in secret_forms(s)}
        self._pattern = re.compile(_trie_pattern(forms)) if forms else None

    @classmethod
    def for_environment(cls, secrets: Iterable[str], environ: Mapping[str, str]) -> Redactor:
        """Config secrets plus the values of environment variables named like secrets."""
        from_env = (v for k, v in environ.items() if SECRET_NAME.search(k))
        return cls([*secrets, *from_env])

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        masked = self._pattern.sub(MASK, text)
        if "\r" in masked:
            # `tok\ren` prints as two pieces that a reader (or Slack's line split) puts together.
            joined = masked.replace("\r", "")
            if self._pattern.search(joined):
                masked = self._pattern.sub(MASK, joined)
        if masked.endswith(LINE_CUT_MARK):
            masked = self._mask_cut_head(masked.removesuffix(LINE_CUT_MARK)) + LINE_CUT_MARK
        return masked

    def _mask_cut_head(self, text: str) -> str:
        """The head of a secret that a line cut left at the very end of ``text``, masked."""
        for secret in self._secrets:
            for length in range(min(len(secret) - 1, len(text)), _MIN_HEAD_LENGTH - 1, -1):
                if text.endswith(secret[:length]):
                    return text[:-length] + MASK
        return text


def _trie_pattern(words: Iterable[str]) -> str:
    """One regex matching any of ``words``, longest first, as a prefix tree.

    re tries the alternatives of a flat `a|b|c` one after another at every position; sharing
    prefixes lets it reject most positions on the first character. Runs without a branch are
    one literal, so the nesting depth is the number of branch points, not the words' length
    (a PEM key is a 1,700-character secret).
    """
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}  # a word ends here

    def pattern(node: dict[str, Any]) -> str:
        literal = []
        while len(node) == 1 and "" not in node:  # a run without a branch or an end
            ((char, node),) = node.items()
            literal.append(char)
        head = re.escape("".join(literal))
        ends = "" in node
        branches = [re.escape(char) + pattern(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return head
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        # Longest match first: the longer branches are tried before stopping here.
        return head + (f"(?:{body})?" if ends else body)

    return pattern(trie)
