"""The redactor against each form a secret takes in build output, at random places (fuzzed)."""

from __future__ import annotations

import base64
import re
from urllib.parse import quote, quote_plus, unquote, unquote_plus

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config import SECRET_NAME
from bot.models import LINE_CUT_MARK
from bot.redact import MASK, Redactor
from tests.support.fuzz import examples

secrets = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./+:@", min_size=8, max_size=40
)
# Any output around it, but not the mask's own character (a mask next to the secret is fine).
noise = st.text(st.characters(blacklist_characters="•", blacklist_categories=["Cs"]), max_size=60)
b64_runs = re.compile(r"[A-Za-z0-9+/_-]+")


def _decodings(text: str) -> list[bytes]:
    """Every way a base64 run in ``text`` decodes, at each of the four character alignments."""
    found = []
    for run in b64_runs.findall(text):
        for start in range(4):
            chunk = run[start:]
            chunk = chunk[: len(chunk) - len(chunk) % 4]
            for decode in (base64.b64decode, base64.urlsafe_b64decode):
                try:
                    found.append(decode(chunk))
                except ValueError:
                    continue
    return found


@settings(max_examples=examples(200), deadline=None)
@given(secrets, noise, noise)
def test_the_secret_itself_is_masked(secret: str, before: str, after: str) -> None:
    out = Redactor([secret])(before + secret + after)
    assert secret not in out and MASK in out


@settings(max_examples=examples(200), deadline=None)
@given(secrets, noise, noise, st.data())
def test_a_secret_split_by_carriage_returns_is_masked(
    secret: str, before: str, after: str, data: st.DataObject
) -> None:
    cut = data.draw(st.integers(1, len(secret) - 1))
    out = Redactor([secret])(before + secret[:cut] + "\r" + secret[cut:] + after)
    assert secret not in out.replace("\r", "")
    assert not any(secret in piece for piece in out.splitlines())


@settings(max_examples=examples(200), deadline=None)
@given(secrets, noise, st.integers(4, 39))
def test_a_line_cut_inside_a_secret_keeps_no_head_of_it(secret: str, before: str, kept: int) -> None:
    head = secret[: min(kept, len(secret) - 1)]
    out = Redactor([secret])(before + head + LINE_CUT_MARK)
    assert out.endswith(MASK + LINE_CUT_MARK)
    assert not out.removesuffix(LINE_CUT_MARK).endswith(head)


@settings(max_examples=examples(200), deadline=None)
@given(secrets, noise, noise, st.binary(max_size=7), st.binary(max_size=7), st.booleans())
def test_base64_of_a_secret_inside_longer_data_is_masked(
    secret: str, before: str, after: str, prefix: bytes, suffix: bytes, urlsafe: bool
) -> None:
    # e.g. `Authorization: Basic base64(user:token)`: the secret at any byte alignment.
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    encoded = encode(prefix + secret.encode() + suffix).decode()
    out = Redactor([secret])(f"{before} {encoded} {after}")
    assert not any(secret.encode() in decoded for decoded in _decodings(out))


@settings(max_examples=examples(200), deadline=None)
@given(secrets, noise, noise, st.booleans())
def test_url_encoded_secrets_are_masked(secret: str, before: str, after: str, plus: bool) -> None:
    encoded = (quote_plus if plus else quote)(secret, safe="")
    out = Redactor([secret])(f"{before}?token={encoded}&{after}")
    assert secret not in (unquote_plus if plus else unquote)(out)


@settings(max_examples=examples(100), deadline=None)
@given(st.lists(secrets, min_size=2, max_size=5), noise)
def test_every_secret_and_form_in_one_line(values: list[str], glue: str) -> None:
    forms = [f(v) for v in values for f in (str, lambda s: base64.b64encode(s.encode()).decode(), quote)]
    out = Redactor(values)(glue.join(forms))
    for value in values:
        assert value not in unquote(out)
        assert not any(value.encode() in decoded for decoded in _decodings(out))


def test_short_values_are_left_alone() -> None:
    assert Redactor(["abc12"])("abc12 stays") == "abc12 stays"


def test_secret_names_beyond_tokens_and_passwords() -> None:
    for name in ("DB_PASS", "BASIC_AUTH", "SENTRY_DSN", "SESSION_COOKIE", "APP_SESSION_KEY", "TLS_CERT"):
        assert SECRET_NAME.search(name), name
    # An author is not an authentication secret: GIT_AUTHOR_EMAIL stays visible in output.
    assert not SECRET_NAME.search("GIT_AUTHOR_EMAIL")
    redact = Redactor.for_environment(
        [], {"SENTRY_DSN": "https://k3y@sentry.example/1", "GIT_AUTHOR_NAME": "robot-ci"}
    )
    assert redact("dsn https://k3y@sentry.example/1 by robot-ci") == f"dsn {MASK} by robot-ci"
