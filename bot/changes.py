"""Change lists: what a deploy ships against what its environment runs, from one cached compare."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from bot.config import Settings
from bot.errors import BotError, StoreError
from bot.models import ChangeKind, ChangeList, CommitInfo, Comparison, Deploy
from bot.ports import ChangeGitHub, StorePort
from bot.text import one_line
from bot.validation import check_repo_name

log = logging.getLogger(__name__)

SHOWN_COMMITS = 10
"""Commit lines a summary shows; the rest is `+N more`."""
TITLE_LIMIT = 120
AUTHOR_LIMIT = 60
NOTE_LIMIT = 200
_STATUSES = {
    "ahead": ChangeKind.AHEAD,
    "behind": ChangeKind.BEHIND,
    "identical": ChangeKind.IDENTICAL,
    "diverged": ChangeKind.DIVERGED,
}


@dataclass(frozen=True)
class Preview:
    """What deploying a repo's branch head to an environment now would ship (nothing deployed)."""

    repo: str
    env: str
    branch: str
    changes: ChangeList


class ChangeLists:
    """Works change lists out: the environment's newest succeeded deploy, then one compare per
    SHA pair, kept in the store for every robot process (a repeat costs no GitHub call)."""

    def __init__(
        self, settings: Settings, github: ChangeGitHub, store: StorePort, redact: Callable[[str], str]
    ) -> None:
        self._settings = settings
        self._github = github
        self._store = store
        self._redact = redact

    def for_deploy(self, deploy: Deploy) -> ChangeList:
        """The deploy's change list, recorded with the commits it ships; never raises.

        Called when a worker claims the deploy: nothing else runs in its environment then, so
        the newest succeeded deploy there is what it replaces. A deploy awaiting approval gets
        one earlier too (what it would replace now), for its approvers.
        """
        try:
            base = self._store.last_succeeded(deploy.repo, deploy.env)
        except StoreError as exc:
            changes = _unavailable(deploy.sha, None, f"the store did not answer ({exc})")
        else:
            changes = self._between(deploy.repo, base, deploy.sha)
        try:
            self._store.record_changes(deploy.id, changes)
        except BotError as exc:
            log.warning("deploy #%s: change list not recorded: %s", deploy.id, exc)
        return changes

    def recorded(self, deploy_id: int) -> ChangeList | None:
        """A deploy's change list as recorded (None before it was worked out, or unreadable)."""
        try:
            return self._store.get_changes(deploy_id)
        except StoreError as exc:
            log.warning("deploy #%s: change list unreadable: %s", deploy_id, exc)
            return None

    def preview(self, repo: str, env: str | None = None) -> Preview:
        """What deploying the repo's branch head to ``env`` now would ship, without deploying.

        A repo, environment or branch GitHub does not know raises (a BotError); a compare that
        fails is an unavailable change list, as for a deploy.
        """
        full, repo_settings = self._settings.repo(check_repo_name(repo))
        env_name, _ = self._settings.environment(full, env)
        head = self._github.resolve_ref(full, repo_settings.branch)
        base = self._store.last_succeeded(full, env_name)
        return Preview(full, env_name, repo_settings.branch, self._between(full, base, head))

    def compare_url(self, repo: str, changes: ChangeList) -> str | None:
        """The GitHub page comparing the base and the head; None when there is no base."""
        if changes.base_sha is None or changes.base_sha == changes.head_sha:
            return None
        return self._github.compare_url(repo, changes.base_sha, changes.head_sha)

    def _between(self, repo: str, base: Deploy | None, head: str) -> ChangeList:
        if base is None:
            return ChangeList(ChangeKind.FIRST, head)
        since = ChangeList(
            ChangeKind.IDENTICAL, head, base.sha, base.id, base.finished_at or base.created_at
        )
        if base.sha == head:
            return since
        try:
            comparison = self._compare(repo, base.sha, head)
        except BotError as exc:  # GitHub down, the repo gone: the deploy goes on without its list
            why = one_line(self._redact(str(exc)), NOTE_LIMIT)
            return replace(since, kind=ChangeKind.UNAVAILABLE, note=why)
        kind = _STATUSES.get(comparison.status)
        if kind is None:
            why = f"no common history with {base.short_sha}"
            return replace(since, kind=ChangeKind.UNAVAILABLE, note=why)
        commits = tuple(self._clean(c) for c in comparison.commits)
        ahead = max(comparison.ahead_by, len(commits))
        return replace(since, kind=kind, ahead_by=ahead, behind_by=comparison.behind_by, commits=commits)

    def _compare(self, repo: str, base: str, head: str) -> Comparison:
        """One compare per SHA pair for every robot process: the store's copy, else GitHub's."""
        try:
            cached = self._store.get_comparison(repo, base, head)
        except StoreError as exc:
            log.warning("%s: comparison cache unreadable: %s", repo, exc)
            cached = None
        if cached is not None:
            return cached
        fresh = self._github.compare(repo, base, head)
        try:
            self._store.put_comparison(repo, base, head, fresh)
        except StoreError as exc:
            log.warning("%s: comparison not cached: %s", repo, exc)
        return fresh

    def _clean(self, commit: CommitInfo) -> CommitInfo:
        """A commit as shown and kept: title and author one line, bounded, secrets masked."""
        title = one_line(self._redact(commit.title), TITLE_LIMIT)
        author = one_line(self._redact(commit.author), AUTHOR_LIMIT)
        return CommitInfo(commit.sha, title, commit.parents, author, commit.committed_at)


def _unavailable(head: str, base: Deploy | None, why: str) -> ChangeList:
    return ChangeList(
        ChangeKind.UNAVAILABLE,
        head,
        base.sha if base else None,
        base.id if base else None,
        note=one_line(why, NOTE_LIMIT),
    )


# ---- the summary, as plain text; Slack and the terminal each make it safe for themselves ----


@dataclass(frozen=True)
class CommitLine:
    """One shipped commit as a summary lists it."""

    short_sha: str
    title: str
    author: str


@dataclass(frozen=True)
class Summary:
    """A change list in words: one headline, up to SHOWN_COMMITS commits (newest first), `+N more`."""

    headline: str
    commits: tuple[CommitLine, ...] = ()
    more: int = 0


def summarize(changes: ChangeList, env: str, now: datetime | None = None) -> Summary:
    """The change list in words (plain, unescaped text)."""
    base = (changes.base_sha or "")[:7]
    match changes.kind:
        case ChangeKind.FIRST:
            return Summary(f"Changes: first deploy to {env}")
        case ChangeKind.UNAVAILABLE:
            why = f" ({changes.note})" if changes.note else ""
            return Summary(f"Changes: unavailable{why}")
        case ChangeKind.IDENTICAL:
            return Summary(f"Changes: none, redeploys {base}{_since(changes, now)}")
        case ChangeKind.BEHIND:
            back = _commits(changes.behind_by)
            return Summary(f"Changes: ⏪ goes back {back} from {base}{_since(changes, now)}")
    lines = tuple(
        CommitLine(c.sha[:7], c.title, c.author) for c in reversed(changes.commits[-SHOWN_COMMITS:])
    )
    more = max(0, changes.ahead_by - len(lines))
    if changes.kind is ChangeKind.DIVERGED:
        headline = (
            f"Changes: diverged from {base}{_since(changes, now)}: "
            f"{_commits(changes.ahead_by)} ahead, {_commits(changes.behind_by)} behind (force push)"
        )
    else:
        headline = f"Changes: {_commits(changes.ahead_by)} since {base}{_since(changes, now)}"
    return Summary(headline, lines, more)


def summary_lines(summary: Summary, compare_url: str | None = None) -> list[str]:
    """The summary as plain lines (the terminal's form; Slack escapes and formats its own)."""
    lines = [summary.headline]
    lines += [f"• {c.short_sha} {c.title}" + (f" · {c.author}" if c.author else "") for c in summary.commits]
    if summary.more:
        lines.append(f"+{summary.more} more")
    if compare_url:
        lines.append(f"Compare: {compare_url}")
    return lines


def _commits(n: int) -> str:
    return f"{n} commit{'' if n == 1 else 's'}"


def _since(changes: ChangeList, now: datetime | None) -> str:
    """` (deploy #41, 2 h ago)` about the deploy the environment runs now."""
    parts = [f"deploy #{changes.base_deploy_id}"] if changes.base_deploy_id is not None else []
    if changes.base_at is not None:
        parts.append(f"{_age((now or datetime.now(UTC)) - changes.base_at)} ago")
    return f" ({', '.join(parts)})" if parts else ""


def _age(delta: timedelta) -> str:
    """A coarse age: `12 s`, `5 min`, `2 h`, `3 d`."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"
