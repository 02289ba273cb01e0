"""What the merge poller tells the announcer: the news of a branch that moved, and the port itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bot.models import ContextState, GateResult


@dataclass(frozen=True)
class MergedPull:
    """A merged pull request; logins are GitHub's, not Slack's."""

    number: int
    title: str
    author: str
    merged_by: str | None = None  # None when not looked up (beyond the lookup cap) or unknown
    url: str | None = None


@dataclass(frozen=True)
class Change:
    """One commit on the branch's first-parent line: a merged pull request, or a direct push."""

    sha: str
    title: str  # first line of the commit message; "" when GitHub did not list the commit
    pull: MergedPull | None = None  # None: pushed without a pull request

    @property
    def direct(self) -> bool:
        return self.pull is None


@dataclass(frozen=True)
class MergeNews:
    """A branch head that moved since the last announcement: one of these per repo per poll."""

    repo: str
    branch: str
    sha: str  # the new head: what every Deploy button deploys
    previous_sha: str  # the head announced (or first seen) before
    changes: tuple[Change, ...]  # newest first; empty after a force push back to an older commit
    total_commits: int  # commits new on the branch, all parents counted (≥ len(changes))
    truncated: bool  # more first-parent commits arrived than were looked up
    forced: bool  # force-pushed: the previous head is not an ancestor of the new one
    ci: GateResult  # the required contexts for ``sha``; empty and green when none are required
    environments: tuple[str, ...]  # one Deploy button each, in config order
    auto_deploy_env: str | None  # set when on_merge is deploy: the poller requests that deploy next
    channel: str  # the repo's channel
    commit_url: str  # web page of ``sha``

    @property
    def pulls(self) -> tuple[MergedPull, ...]:
        """The merged pull requests, newest first, each once."""
        seen: dict[int, MergedPull] = {}
        for change in self.changes:
            if change.pull is not None and change.pull.number not in seen:
                seen[change.pull.number] = change.pull
        return tuple(seen.values())

    @property
    def head_pull(self) -> MergedPull | None:
        """The pull request that produced ``sha``; None for a direct push or a force push."""
        if self.changes and self.changes[0].sha == self.sha:
            return self.changes[0].pull
        return None

    @property
    def direct_pushes(self) -> tuple[Change, ...]:
        """Commits that reached the branch without a pull request, newest first."""
        return tuple(c for c in self.changes if c.direct)

    @property
    def merger(self) -> str | None:
        """Who merged the head's pull request (its author when GitHub does not say)."""
        pull = self.head_pull
        if pull is None:
            return None
        return pull.merged_by or pull.author or None

    @property
    def ci_summary(self) -> str:
        """``success``, ``failure``, ``pending`` or ``missing`` (the worst context wins)."""
        states = {c.state for c in self.ci.contexts}
        for state in (ContextState.FAILURE, ContextState.PENDING, ContextState.MISSING):
            if state in states:
                return state.value
        return ContextState.SUCCESS.value


@dataclass(frozen=True)
class AnnouncementRef:
    """Where an announcement was posted; an auto-deploy uses it as its root message."""

    channel: str
    ts: str


class MergeAnnouncer(Protocol):
    """Posts merge news and problems to the repo's channel (Slack in production)."""

    def announce(self, news: MergeNews) -> AnnouncementRef | None:
        """Post one announcement; raise if it was not posted (the poller retries next cycle).

        Return where it went (or None when there is no message to thread under).
        """
        ...

    def announce_problem(self, repo: str, text: str, thread: AnnouncementRef | None = None) -> None:
        """Post a warning about ``repo`` (in ``thread`` when given); ``text`` is plain and one line."""
        ...
