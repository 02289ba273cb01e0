"""Repo names and refs are checked before anything reaches GitHub or a process."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.errors import InvalidDuration, InvalidRef, InvalidRepoName
from bot.redact import MASK, Redactor
from bot.validation import check_ref, check_repo_name, parse_duration


@pytest.mark.parametrize("ref", ["main", "release/1.2", "v1.0.0", "a" * 40, "feature/x_y-z+1"])
def test_good_refs(ref: str) -> None:
    assert check_ref(ref) == ref


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "main;rm -rf /",
        "$(whoami)",
        "`id`",
        "a b",
        "-rf",
        "../etc",
        "a..b",
        "main\nfoo",
        "x.lock",
        "héllo",
        "a//b",
        "refs/@{1}",
        "x" * 201,
    ],
)
def test_bad_refs_say_what_is_allowed(ref: str) -> None:
    with pytest.raises(InvalidRef, match="use a branch, tag or commit SHA") as info:
        check_ref(ref)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["acme/api", "api", "a-b/c.d_e"])
def test_good_repo_names(name: str) -> None:
    assert check_repo_name(name) == name


@pytest.mark.parametrize("name", ["acme/", "/api", "acme/api/x", "acme/..", "ac me/api", "a;b/c", ".."])
def test_bad_repo_names(name: str) -> None:
    with pytest.raises(InvalidRepoName, match="owner/name"):
        check_repo_name(name)


def test_redactor_masks_longest_first_and_env_secrets() -> None:
    redact = Redactor.for_environment(
        ["abcdef", "abcdefghij"], {"DB_PASSWORD": "hunter2hunter2", "HOME": "/root", "API_KEY": "k"}
    )
    assert redact("x abcdefghij y abcdef hunter2hunter2 /root k") == f"x {MASK} y {MASK} {MASK} /root k"


def test_redactor_without_secrets_is_identity() -> None:
    assert Redactor([])("nothing <!channel> here") == "nothing <!channel> here"


def test_durations() -> None:
    assert parse_duration("30m") == timedelta(minutes=30)
    assert parse_duration("2H") == timedelta(hours=2)
    assert parse_duration("90d") == timedelta(days=90)
    assert parse_duration("1w") == timedelta(weeks=1)
    for bad in ("", "0d", "90", "d", "1.5h", "-1d", "1y", "1 d x"):
        with pytest.raises(InvalidDuration, match="is not a duration"):
            parse_duration(bad)
    # A date that far back cannot be computed: refused as input, not a crash later.
    with pytest.raises(InvalidDuration, match="longer than a century"):
        parse_duration("999999w")
