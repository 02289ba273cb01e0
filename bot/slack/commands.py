"""The `/deploy` and `/deploy-status` grammar (DESIGN §2): command text → frozen command values."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from bot.errors import BadCommand
from bot.text import shown
from bot.validation import ENV_NAME, LOCK_DURATION_HELP, check_ref, check_repo_name, parse_lock_duration

MAX_TEXT = 500
MAX_REASON = 200
USAGE = (
    "Usage: `/deploy <repo>[@<ref>] [to <env>][!]`, `/deploy cancel <id>`, "
    "`/deploy lock <repo> [to <env>] [for <duration>] [: reason]`, `/deploy unlock <repo> [to <env>]`, "
    "`/deploy where <repo>`, `/deploy rollback <repo> [to <env>]`, "
    "`/deploy changes <repo> [to <env>]`, `/deploy approve <id>`, `/deploy reject <id> [: reason]`, "
    "`/deploy stats [<repo>] [<env>]`, `/deploy help`."
)
DEPLOY_USAGE = "Usage: `/deploy <repo>[@<ref>] [to <env>][!]`"
LOCK_USAGE = "Usage: `/deploy lock <repo> [to <env>] [for <duration>] [: reason]`"
STATUS_USAGE = "Usage: `/deploy-status [<repo>] [<env>]`"

_DEPLOY_ID = re.compile(r"#?([0-9]{1,18})")
# Slack markup: <url|label>, <@U…>, <#C…|name>, <!here>; the text between is already &-escaped.
_MARKUP = re.compile(r"<([^<>]*)>")
_QUOTES = "\"'“”‘’„«»"
_KEYWORDS = ("cancel", "lock", "unlock", "where", "changes", "help", "rollback", "approve", "reject", "stats")
_TAKES_REASON = ("lock", "reject")
ROLLBACK_USAGE = "`/deploy rollback <repo> [to <env>]`"
STATS_USAGE = "Usage: `/deploy stats [<repo>] [<env>]`"
ROLLBACK_NO_FORCE = (
    "`/deploy rollback` cannot be forced with `!`: it skips the CI gate by right and waits for "
    "approval where the environment wants it. To break glass, deploy the SHA itself: "
    "`/deploy <repo>@<sha> [to <env>]!`."
)


@dataclass(frozen=True)
class DeployCommand:
    """`/deploy <repo>[@<ref>] [to <env>][!]`."""

    repo: str
    ref: str | None = None
    env: str | None = None
    force: bool = False


@dataclass(frozen=True)
class CancelCommand:
    """`/deploy cancel <id>`."""

    deploy_id: int


@dataclass(frozen=True)
class ApproveCommand:
    """`/deploy approve <id>`."""

    deploy_id: int


@dataclass(frozen=True)
class RejectCommand:
    """`/deploy reject <id> [: reason]`."""

    deploy_id: int
    reason: str = ""


@dataclass(frozen=True)
class LockCommand:
    """`/deploy lock <repo> [to <env>] [for <duration>] [: reason]`; no duration: until unlocked."""

    repo: str
    env: str | None = None
    reason: str = ""
    duration: timedelta | None = None


@dataclass(frozen=True)
class UnlockCommand:
    """`/deploy unlock <repo> [to <env>]`."""

    repo: str
    env: str | None = None


@dataclass(frozen=True)
class WhereCommand:
    """`/deploy where <repo>`."""

    repo: str


@dataclass(frozen=True)
class RollbackCommand:
    """`/deploy rollback <repo> [to <env>]`: redeploy what ran there before the current SHA."""

    repo: str
    env: str | None = None


@dataclass(frozen=True)
class ChangesCommand:
    """`/deploy changes <repo> [to <env>]`: what deploying the branch head now would ship."""

    repo: str
    env: str | None = None


@dataclass(frozen=True)
class StatsCommand:
    """`/deploy stats [<repo>] [<env>]`: the DORA figures of the last 30 days."""

    repo: str | None = None
    env: str | None = None


@dataclass(frozen=True)
class HelpCommand:
    """`/deploy help` or an empty `/deploy`."""


@dataclass(frozen=True)
class StatusCommand:
    """`/deploy-status [<repo>] [<env>]`."""

    repo: str | None = None
    env: str | None = None


Command = (
    DeployCommand
    | CancelCommand
    | LockCommand
    | UnlockCommand
    | WhereCommand
    | HelpCommand
    | RollbackCommand
    | ChangesCommand
    | ApproveCommand
    | RejectCommand
    | StatsCommand
)


def check_env_name(env: str) -> str:
    """``env`` if it is an environment word, else BadCommand saying what is allowed."""
    if not ENV_NAME.fullmatch(env):
        raise BadCommand(
            f"`{shown(env)}` is not an environment name: use letters, digits, `.`, `_` and `-` "
            "(e.g. `production`)."
        )
    return env


def parse_deploy(text: str) -> Command:
    """The `/deploy` text as a command value, or BadCommand / InvalidRef / InvalidRepoName."""
    _check_size(text, "/deploy")
    first = text.split(maxsplit=1)[0].lower() if text.strip() else ""
    reason: str | None = None
    head = text
    if first in _TAKES_REASON:
        head, reason = _split_reason(text)
    words = _plain_words(head, "/deploy")
    if not words:
        return HelpCommand()
    keyword = words[0].lower()
    if keyword not in _TAKES_REASON and any(":" in w for w in words):
        raise BadCommand(f"Only `/deploy lock` and `/deploy reject` take a `: reason`. {USAGE}")
    if keyword == "help":
        if len(words) > 1:
            raise BadCommand(f"`/deploy help` takes nothing after it. {USAGE}")
        return HelpCommand()
    if keyword == "cancel":
        return CancelCommand(_deploy_id(words[1:], "cancel"))
    if keyword == "approve":
        return ApproveCommand(_deploy_id(words[1:], "approve"))
    if keyword == "reject":
        return RejectCommand(_deploy_id(words[1:], "reject"), _clean_reason(reason or ""))
    if keyword == "lock":
        return _parse_lock(words[1:], _clean_reason(reason or ""))
    if keyword == "unlock":
        repo, env = _repo_and_env(words[1:], f"/deploy {keyword}", f"`/deploy {keyword} <repo> [to <env>]`")
        return UnlockCommand(repo, env)
    if keyword == "rollback":
        if any("!" in w for w in words[1:]):
            raise BadCommand(ROLLBACK_NO_FORCE)
        return RollbackCommand(*_repo_and_env(words[1:], "/deploy rollback", ROLLBACK_USAGE))
    if keyword == "changes":
        usage = "`/deploy changes <repo> [to <env>]`"
        return ChangesCommand(*_repo_and_env(words[1:], "/deploy changes", usage))
    if keyword == "stats":
        return _parse_stats(words[1:])
    if keyword == "where":
        if len(words) != 2:
            raise BadCommand("`/deploy where` needs exactly one repo. Usage: `/deploy where <repo>`")
        return WhereCommand(_repo(words[1]))
    return _parse_deploy_words(words)


def parse_status(text: str) -> StatusCommand:
    """The `/deploy-status` text as a StatusCommand, or BadCommand / InvalidRepoName."""
    _check_size(text, "/deploy-status")
    words = _plain_words(text, "/deploy-status")
    if len(words) == 3 and words[1].lower() == "to":
        words = [words[0], words[2]]
    if len(words) > 2:
        raise BadCommand(f"`/deploy-status` takes at most a repo and an environment. {STATUS_USAGE}")
    repo = _repo(words[0]) if words else None
    env = check_env_name(words[1]) if len(words) == 2 else None
    return StatusCommand(repo, env)


def _parse_stats(args: list[str]) -> StatsCommand:
    """`[<repo>] [[to] <env>]`, or `to <env>` alone: that environment of every repo."""
    if any("!" in a for a in args):
        raise BadCommand(f"`/deploy stats` cannot be forced with `!`. {STATS_USAGE}")
    if len(args) == 2 and args[0].lower() == "to":
        return StatsCommand(None, check_env_name(args[1]))
    if len(args) == 3 and args[1].lower() == "to":
        args = [args[0], args[2]]
    if len(args) > 2:
        raise BadCommand(f"`/deploy stats` takes at most a repo and an environment. {STATS_USAGE}")
    if any(a.lower() == "to" for a in args):
        raise BadCommand(f"`/deploy stats` needs an environment after `to`. {STATS_USAGE}")
    repo = _repo(args[0]) if args else None
    return StatsCommand(repo, check_env_name(args[1]) if len(args) == 2 else None)


def _parse_deploy_words(words: list[str]) -> DeployCommand:
    """`<repo>[@<ref>] [to <env>][!]` with the `!` attached or separate."""
    force = False
    if words[-1] == "!":
        words, force = words[:-1], True
    elif words[-1].endswith("!"):
        words, force = [*words[:-1], words[-1][:-1]], True
    if not words:
        raise BadCommand(f"`/deploy !` needs a repo before `!`. {DEPLOY_USAGE}")
    if any("!" in w for w in words):
        raise BadCommand(f"`!` goes once, at the very end. {DEPLOY_USAGE}")
    target, rest = words[0], words[1:]
    if target.startswith("-"):
        raise BadCommand(f"`/deploy` has no options; add `!` at the end to skip the CI gate. {DEPLOY_USAGE}")
    if target.lower() == "to":
        raise BadCommand(f"`/deploy` needs a repo before `to`. {DEPLOY_USAGE}")
    env = _env_clause(rest, f"/deploy {shown(target)}", DEPLOY_USAGE)
    repo, at, ref = target.partition("@")
    if at and not ref:
        raise BadCommand(f"`/deploy {shown(target)}` needs a ref after `@`. {DEPLOY_USAGE}")
    if not repo:
        raise BadCommand(f"`/deploy` needs a repo before `@`. {DEPLOY_USAGE}")
    return DeployCommand(_repo(repo), check_ref(ref) if at else None, env, force)


def _parse_lock(args: list[str], reason: str) -> LockCommand:
    """`<repo>` then `to <env>` and `for <duration>`, each at most once, in either order."""
    if not args:
        raise BadCommand(f"`/deploy lock` needs a repo. {LOCK_USAGE}")
    if any("!" in a for a in args):
        raise BadCommand(f"`/deploy lock` cannot be forced with `!`. {LOCK_USAGE}")
    repo, rest = _repo(args[0]), args[1:]
    said = f"/deploy lock {shown(args[0])}"
    clauses: dict[str, str] = {}
    while rest:
        word = rest[0].lower()
        if word not in ("to", "for"):
            hint = "."
            if rest[0][:1].isdigit():
                hint = f"; did you mean `for {shown(rest[0])}`?"
            elif len(rest) == 1:
                hint = f"; did you mean `to {shown(rest[0])}`?"
            raise BadCommand(f"Unexpected `{shown(rest[0])}` in `{said}`{hint} {LOCK_USAGE}")
        if word in clauses:
            raise BadCommand(f"`{said}` takes one `{word}`. {LOCK_USAGE}")
        if len(rest) == 1:
            what = "an environment" if word == "to" else f"a duration ({LOCK_DURATION_HELP})"
            raise BadCommand(f"`{said} {word}` needs {what} after `{word}`. {LOCK_USAGE}")
        clauses[word] = rest[1]
        rest = rest[2:]
    env = check_env_name(clauses["to"]) if "to" in clauses else None
    duration = parse_lock_duration(clauses["for"]) if "for" in clauses else None
    return LockCommand(repo, env, reason, duration)


def _deploy_id(args: list[str], keyword: str) -> int:
    """`<id>` or `#<id>` after `cancel` / `approve` / `reject`."""
    example = f"`/deploy {keyword} 42`"
    if not args:
        raise BadCommand(f"`/deploy {keyword}` needs a deploy id, e.g. {example}.")
    if len(args) > 1:
        raise BadCommand(f"`/deploy {keyword}` takes one deploy id, e.g. {example}.")
    match = _DEPLOY_ID.fullmatch(args[0])
    if not match or int(match.group(1)) == 0:
        raise BadCommand(f"`{shown(args[0])}` is not a deploy id; use its number, e.g. {example}.")
    return int(match.group(1))


def _repo_and_env(args: list[str], command: str, usage: str) -> tuple[str, str | None]:
    """`<repo> [to <env>]` for unlock, rollback and changes."""
    if not args:
        raise BadCommand(f"`{command}` needs a repo. Usage: {usage}")
    if any("!" in a for a in args):
        raise BadCommand(f"`{command}` cannot be forced with `!`. Usage: {usage}")
    return _repo(args[0]), _env_clause(args[1:], f"{command} {shown(args[0])}", f"Usage: {usage}")


def _env_clause(rest: list[str], said: str, usage: str) -> str | None:
    """The optional `to <env>` after a repo."""
    if not rest:
        return None
    if rest[0].lower() != "to":
        hint = f"; did you mean `to {shown(rest[0])}`?" if len(rest) == 1 else "."
        raise BadCommand(f"Unexpected `{shown(rest[0])}` in `{said}`{hint} {usage}")
    if len(rest) == 1:
        raise BadCommand(f"`{said} to` needs an environment after `to`. {usage}")
    if len(rest) > 2:
        raise BadCommand(f"Unexpected `{shown(rest[2])}` after `to {shown(rest[1])}`. {usage}")
    return check_env_name(rest[1])


def _repo(name: str) -> str:
    """A repo word, with a clearer message when a keyword stands where the repo should be."""
    if name.lower() in _KEYWORDS:
        raise BadCommand(f"`{name}` is a command word, not a repo. {USAGE}")
    return check_repo_name(name)


def _check_size(text: str, command: str) -> None:
    """Refuse oversized text before any parsing work."""
    if len(text) > MAX_TEXT:
        raise BadCommand(f"`{command}` text is too long ({len(text)} characters; at most {MAX_TEXT}).")


def _split_reason(text: str) -> tuple[str, str | None]:
    """Text before and after the first `:` outside Slack markup."""
    depth = 0
    for i, char in enumerate(text):
        if char == "<":
            depth += 1
        elif char == ">":
            depth = max(0, depth - 1)
        elif char == ":" and depth == 0:
            return text[:i], text[i + 1 :]
    return text, None


def _plain_words(text: str, command: str) -> list[str]:
    """Command words with labelled links unwrapped; mentions, bare links and quotes refused."""

    def unwrap(match: re.Match[str]) -> str:
        target, bar, label = match.group(1).partition("|")
        if bar and label and target.startswith(("http://", "https://", "mailto:")):
            # Slack linkified something the user typed (`api.io`, `a@b.com`); the label is that text.
            return label
        raise BadCommand(
            f"`{command}` got a Slack link or mention (`{shown(match.group(0))}`); "
            f"type the repo and environment as plain words. {USAGE}"
        )

    plain = _unescape(_MARKUP.sub(unwrap, text))
    if any(q in plain for q in _QUOTES):
        raise BadCommand(f"`{command}` needs no quotes; type e.g. `/deploy acme/api to production`.")
    return plain.split()


def _clean_reason(raw: str) -> str:
    """A lock reason as plain one-line text: markup flattened to what it shows, cut at MAX_REASON."""

    def flatten(match: re.Match[str]) -> str:
        target, _, label = match.group(1).partition("|")
        if target.startswith(("@", "#", "!")):
            return target[0].replace("!", "@") + (label or target[1:])
        return label or target

    reason = " ".join(_unescape(_MARKUP.sub(flatten, raw)).split())
    return reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 1] + "…"


def _unescape(text: str) -> str:
    """Undo the &-escaping Slack applies to slash command text."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
