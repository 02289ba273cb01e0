"""Syntax checks for repo names, git refs and durations, before anything reaches GitHub or a process."""

from __future__ import annotations

import re
from datetime import timedelta

from bot.errors import InvalidDuration, InvalidRef, InvalidRepoName
from bot.text import shown

REPO_NAME_HELP = "a repo is owner/name: letters, digits, `-`, `_`, `.` (e.g. acme/api)"
_OWNER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")
_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
# Environment names travel in slash commands and button values: one plain word.
ENV_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# git check-ref-format, narrowed to what branch, tag and SHA names use in practice.
_REF = re.compile(r"[A-Za-z0-9._/+-]{1,200}")


def is_valid_repo_name(name: str) -> bool:
    """True for ``owner/name`` as GitHub allows them."""
    owner, sep, repo = name.partition("/")
    return bool(sep and _OWNER.fullmatch(owner) and _NAME.fullmatch(repo) and repo not in (".", ".."))


def check_repo_name(name: str) -> str:
    """``name`` if it is owner/name or a bare name, else InvalidRepoName."""
    if "/" in name:
        if not is_valid_repo_name(name):
            raise InvalidRepoName(f"`{shown(name)}` is not a repo name; {REPO_NAME_HELP}.")
    elif not _NAME.fullmatch(name) or name in (".", ".."):
        raise InvalidRepoName(f"`{shown(name)}` is not a repo name; {REPO_NAME_HELP}.")
    return name


def check_ref(ref: str) -> str:
    """``ref`` if it is a safe git ref (branch, tag or SHA), else InvalidRef saying what is allowed."""
    bad = (
        not _REF.fullmatch(ref)
        or ref.startswith(("-", "/", "."))
        or ref.endswith(("/", ".", ".lock"))
        or ".." in ref
        or "//" in ref
        or "/." in ref
        or "@{" in ref
    )
    if bad:
        raise InvalidRef(
            f"`{shown(ref)}` is not a valid ref: use a branch, tag or commit SHA made of "
            "letters, digits and `. _ - / +`, without `..`."
        )
    return ref


_DURATION = re.compile(r"([1-9][0-9]{0,5})([mhdw])")
_MAX_DURATION = timedelta(days=100 * 366)  # beyond a century nothing the robot keeps is older
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DURATION_HELP = "a whole number of minutes, hours, days or weeks, e.g. `30m`, `2h`, `90d`, `1w`"


def parse_duration(text: str) -> timedelta:
    """``30m`` / ``2h`` / ``90d`` / ``1w`` as a timedelta, else InvalidDuration naming what is valid."""
    found = _DURATION.fullmatch(text.strip().lower())
    if found is None:
        raise InvalidDuration(f"`{shown(text)}` is not a duration; use {DURATION_HELP}.")
    duration = timedelta(seconds=int(found.group(1)) * _UNIT_SECONDS[found.group(2)])
    if duration > _MAX_DURATION:
        raise InvalidDuration(f"`{shown(text)}` is longer than a century; use {DURATION_HELP}.")
    return duration


MAX_LOCK_DURATION = timedelta(days=30)
"""The longest lock that expires; a longer freeze is a lock without a duration."""
LOCK_DURATION_HELP = (
    "a number of days, hours, minutes or seconds, e.g. `30m`, `2h`, `1d`, `1h30m`, `90s` (at most 30 days)"
)
_LOCK_DURATION = re.compile(r"(?:([0-9]{1,6})d)?(?:([0-9]{1,6})h)?(?:([0-9]{1,6})m)?(?:([0-9]{1,7})s)?")
_LOCK_UNITS = (86400, 3600, 60, 1)


def parse_lock_duration(text: str) -> timedelta:
    """How long a lock lasts: ``30m``, ``2h``, ``1d``, ``1h30m``, ``90s``, at most 30 days; else
    InvalidDuration naming the valid forms."""
    word = text.strip().lower()
    found = _LOCK_DURATION.fullmatch(word)
    if not word or found is None:
        raise InvalidDuration(f"`{shown(text)}` is not a lock duration; use {LOCK_DURATION_HELP}.")
    seconds = sum(int(part) * unit for part, unit in zip(found.groups(), _LOCK_UNITS, strict=True) if part)
    if seconds == 0:
        raise InvalidDuration(f"`{shown(text)}` is no time at all; use {LOCK_DURATION_HELP}.")
    duration = timedelta(seconds=seconds)
    if duration > MAX_LOCK_DURATION:
        raise InvalidDuration(
            f"`{shown(text)}` is longer than 30 days, the longest lock that expires; "
            "lock without `for` to lock until someone unlocks."
        )
    return duration
