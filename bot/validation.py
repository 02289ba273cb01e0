"""Syntax checks for repo names and git refs, before anything reaches GitHub or a process."""

from __future__ import annotations

import re

from bot.errors import InvalidRef, InvalidRepoName
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
