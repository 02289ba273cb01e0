"""One pass of the merge poller over the configured repos: new heads → announcements, auto-deploys.

Delivery: a new head is recorded in the store only after its announcement was posted (and its
auto-deploy, if any, requested). A robot that dies between the two re-announces that head once
after the restart; it never misses one. The auto-deploy cannot repeat: it is claimed in the store
(``mark_auto_deployed``: once per repo + env + SHA) before it is requested.

Cost: an unchanged branch is one conditional request answered 304 (no rate-limit unit). A moved
branch costs its 200, one compare, per first-parent commit one pull-request lookup (at most
``MAX_LOOKUPS``) plus one read per merged pull request for its merger, and two reads of CI when
contexts are required.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from bot.config import RepoSettings, Settings
from bot.errors import BotError, EnvironmentLocked, InvalidRef, RateLimited, UnknownRepo
from bot.models import (
    AnnouncementRef,
    BranchHead,
    Change,
    CommitInfo,
    Comparison,
    GateResult,
    HeadPoll,
    MergedPull,
    MergeNews,
    Source,
)
from bot.ports import NO_METRICS, DeployRequester, MergeAnnouncer, Metrics, PollGitHub, PollStore

log = logging.getLogger(__name__)

MAX_LOOKUPS = 20  # first-parent commits whose pull requests are looked up per announcement
LOW_FRACTION = 0.1  # below this share of the hourly limit (or 2 units per repo) polling pauses
SECONDARY_WAIT = 60.0  # GitHub's advice for a secondary limit that names no Retry-After
GONE_BACKOFF = (10, 60.0, 900.0)  # a gone branch/repo is re-tried every 10 intervals, 1 to 15 min
JITTER = 0.5  # seconds of scheduler jitter tolerated when a repo's not-before time is checked


class PollOutcome(StrEnum):
    """What one poll did with one repo."""

    FIRST_SEEN = "first_seen"  # head recorded, nothing announced
    UNCHANGED = "unchanged"  # 304, or the same SHA
    ANNOUNCED = "announced"  # new head announced (and auto-deploy requested if configured)
    RECORDED = "recorded"  # on_merge: ignore — new head recorded silently
    WAITING = "waiting"  # not polled: X-Poll-Interval, or a gone repo's back-off
    RATE_LIMITED = "rate_limited"  # not polled, or refused: GitHub's limit is low or hit
    GONE = "gone"  # branch deleted, repo gone or unreadable (warned once)
    FAILED = "failed"  # GitHub or the announcer failed; retried next poll


@dataclass(frozen=True)
class RepoPoll:
    """One repo's result in a poll; ``detail`` is one human line."""

    outcome: PollOutcome
    detail: str = ""
    deploy_id: int | None = None


@dataclass(frozen=True)
class PollReport:
    """Every configured repo's result, and until when GitHub's rate limit pauses polling."""

    repos: Mapping[str, RepoPoll] = field(default_factory=dict)
    paused_until: float | None = None

    def with_outcome(self, outcome: PollOutcome) -> list[str]:
        """The repos that had ``outcome``, in config order."""
        return [repo for repo, result in self.repos.items() if result.outcome is outcome]


class Poller:
    """Polls each configured repo's branch once per ``poll_once`` call; the scheduler calls it."""

    def __init__(
        self,
        settings: Settings,
        github: PollGitHub,
        store: PollStore,
        service: DeployRequester,
        announcer: MergeAnnouncer,
        clock: Callable[[], float] = time.time,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._heads_asked = 0  # head polls answered in the current cycle
        self._not_modified = 0  # … of which GitHub answered 304
        self._github = github
        self._store = store
        self._service = service
        self._announcer = announcer
        self._clock = clock  # epoch seconds: compared with GitHub's X-RateLimit-Reset
        self._not_before: dict[str, float] = {}
        self._paused_until = 0.0
        self._rate: tuple[int, int, float] | None = None  # limit, remaining, reset
        self._gone: dict[str, str] = {}  # repo → the warning already given
        self._failing: dict[str, str] = {}  # repo → the error already logged
        self._unsent: dict[str, MergeNews] = {}  # news gathered but not announced yet

    def poll_once(self) -> PollReport:
        """One pass over every configured repo; never raises for one repo's trouble."""
        began = time.monotonic()
        self._heads_asked = self._not_modified = 0
        report = self._poll_all()
        self._metrics.poll_cycle(time.monotonic() - began, self._heads_asked, self._not_modified)
        return report

    def _poll_all(self) -> PollReport:
        now = self._clock()
        results: dict[str, RepoPoll] = {}
        repos = list(self._settings.repos.items())
        for index, (repo, settings) in enumerate(repos):
            paused = self._pause_reason(now)
            if paused is not None:
                results.update(
                    {name: RepoPoll(PollOutcome.RATE_LIMITED, paused) for name, _ in repos[index:]}
                )
                break
            not_before = self._not_before.get(repo, 0.0)
            if not_before > now + JITTER:
                results[repo] = RepoPoll(PollOutcome.WAITING, f"next poll in {not_before - now:.0f} s")
                continue
            results[repo] = self._poll_guarded(repo, settings, now)
        return PollReport(results, self._paused_until if self._paused_until > now else None)

    # ---- one repo --------------------------------------------------------------------

    def _poll_guarded(self, repo: str, settings: RepoSettings, now: float) -> RepoPoll:
        try:
            result = self._poll_repo(repo, settings, now)
        except RateLimited as exc:
            return self._rate_limited(repo, exc, now)
        except (UnknownRepo, InvalidRef) as exc:
            return self._unreachable(repo, str(exc), now)
        except BotError as exc:
            self._trouble(repo, str(exc))
            return RepoPoll(PollOutcome.FAILED, str(exc))
        except Exception as exc:
            # The announcer's own failures (Slack down) land here too: keep polling the others.
            log.exception("Merge poll of %s failed; it is retried next poll", repo)
            self._failing[repo] = type(exc).__name__
            return RepoPoll(PollOutcome.FAILED, f"internal error ({type(exc).__name__}), see the log")
        if repo in self._failing or repo in self._gone:
            log.info("Merge polling of %s works again", repo)
        self._failing.pop(repo, None)
        self._gone.pop(repo, None)
        return result

    def _poll_repo(self, repo: str, settings: RepoSettings, now: float) -> RepoPoll:
        stored = self._store.get_head(repo)
        poll = self._github.poll_head(repo, settings.branch, stored.etag if stored else None)
        self._note_pacing(repo, poll, now)
        self._heads_asked += 1
        if poll.sha is None:
            self._not_modified += 1
            return RepoPoll(PollOutcome.UNCHANGED)
        head = BranchHead(repo, poll.sha, poll.etag)
        if stored is None:
            self._store.set_head(head)
            log.info("First poll of %s %s: recorded %s, nothing announced", repo, settings.branch, poll.sha)
            return RepoPoll(PollOutcome.FIRST_SEEN, poll.sha[:7])
        if poll.sha == stored.sha:
            if poll.etag != stored.etag:
                self._store.set_head(head)
            return RepoPoll(PollOutcome.UNCHANGED)
        if settings.on_merge == "ignore":
            self._store.set_head(head)
            return RepoPoll(PollOutcome.RECORDED, poll.sha[:7])
        news = self._news(repo, settings, stored.sha, poll.sha)
        where = self._announcer.announce(news)
        self._unsent.pop(repo, None)
        deploy_id, detail = None, f"{stored.sha[:7]}..{poll.sha[:7]}"
        if settings.on_merge == "deploy":
            deploy_id, detail = self._auto_deploy(repo, settings, news, where)
        self._store.set_head(head)
        log.info("Announced %s %s: %s", repo, settings.branch, detail)
        return RepoPoll(PollOutcome.ANNOUNCED, detail, deploy_id)

    def _news(self, repo: str, settings: RepoSettings, old: str, new: str) -> MergeNews:
        """What moved the branch from ``old`` to ``new``; reused while the announcer keeps failing."""
        unsent = self._unsent.get(repo)
        if unsent is not None and (unsent.previous_sha, unsent.sha) == (old, new):
            return unsent
        comparison = self._github.compare(repo, old, new)
        line = _first_parent_line(comparison, new)
        seen: dict[int, MergedPull] = {}
        changes = tuple(
            Change(c.sha, c.title, self._pull_for(repo, settings.branch, c.sha, seen))
            for c in line[:MAX_LOOKUPS]
        )
        contexts = settings.required_contexts
        news = MergeNews(
            repo=repo,
            branch=settings.branch,
            sha=new,
            previous_sha=old,
            changes=changes,
            total_commits=max(comparison.total_commits, len(changes)),
            truncated=len(line) > MAX_LOOKUPS or comparison.total_commits > len(comparison.commits),
            forced=comparison.status not in ("ahead", "identical"),
            ci=self._github.ci_state(repo, new, contexts) if contexts else GateResult(()),
            environments=tuple(settings.environments),
            auto_deploy_env=settings.auto_deploy_env if settings.on_merge == "deploy" else None,
            channel=self._settings.channel(repo),
            commit_url=self._github.commit_url(repo, new),
        )
        self._unsent[repo] = news
        return news

    def _pull_for(self, repo: str, branch: str, sha: str, seen: dict[int, MergedPull]) -> MergedPull | None:
        """The pull request merged into ``branch`` that produced commit ``sha``; None: a direct push."""
        merged = [p for p in self._github.pulls_for_commit(repo, sha) if p.merged and p.base == branch]
        if not merged:
            return None
        best = next((p for p in merged if p.merge_commit_sha == sha), merged[0])
        if best.number not in seen:
            merger = self._github.pull_request(repo, best.number).merged_by
            seen[best.number] = MergedPull(best.number, best.title, best.author, merger, best.url)
        return seen[best.number]

    def _auto_deploy(
        self, repo: str, settings: RepoSettings, news: MergeNews, where: AnnouncementRef | None
    ) -> tuple[int | None, str]:
        """Request the on_merge deploy of the new head, once per repo + env + SHA ever."""
        env, short = settings.auto_deploy_env, news.sha[:7]
        if not self._store.mark_auto_deployed(repo, env, news.sha):
            return None, f"auto-deploy of {short} to {env} was already requested"
        try:
            deploy, _ = self._service.request(
                repo,
                ref=news.sha,
                env=env,
                user=news.merger or "merge",
                source=Source.MERGE,
                channel=where.channel if where else None,
                message_ts=where.ts if where else None,
            )
        except EnvironmentLocked as exc:
            text = f"Auto-deploy of {short} to {env} is held: {exc} Then use the Deploy button to deploy it."
        except BotError as exc:
            text = f"Auto-deploy of {short} to {env} did not start: {exc}"
        except Exception:
            log.exception("Auto-deploy of %s %s to %s failed", repo, short, env)
            text = f"Auto-deploy of {short} to {env} did not start (robot error, see its log)."
        else:
            return deploy.id, f"auto-deploy #{deploy.id} of {short} to {env}"
        self._problem(repo, text, where)
        return None, text

    # ---- pacing and trouble ----------------------------------------------------------

    def _note_pacing(self, repo: str, poll: HeadPoll, now: float) -> None:
        if poll.limit is not None and poll.remaining is not None and poll.reset is not None:
            self._rate = (poll.limit, poll.remaining, poll.reset)
        if poll.poll_interval is not None and poll.poll_interval > 0:
            self._not_before[repo] = now + poll.poll_interval
        else:
            self._not_before.pop(repo, None)

    def _pause_reason(self, now: float) -> str | None:
        """Why no request may go out now, or None; pauses when the hourly budget runs low."""
        if self._paused_until > now:
            return f"GitHub rate limit: polling resumes in {self._paused_until - now:.0f} s"
        if self._rate is None:
            return None
        limit, remaining, reset = self._rate
        floor = max(limit * LOW_FRACTION, 2 * len(self._settings.repos))
        if reset <= now or remaining >= floor:
            return None
        # Deploys (gate, deployments, statuses) need what is left more than merge news does.
        self._paused_until = reset + 1
        self._rate = None
        log.warning(
            "GitHub rate limit low (%d of %d left): merge polling paused for %.0f s until the reset",
            remaining,
            limit,
            self._paused_until - now,
        )
        return f"GitHub rate limit low ({remaining} of {limit} left): polling paused until the reset"

    def _rate_limited(self, repo: str, exc: RateLimited, now: float) -> RepoPoll:
        if exc.retry_after is not None:
            until = now + exc.retry_after
        elif exc.reset is not None:
            until = exc.reset + 1
        else:
            until = now + SECONDARY_WAIT
        self._paused_until = max(self._paused_until, until, now + 1)
        log.warning("%s: merge polling paused for %.0f s", exc, self._paused_until - now)
        return RepoPoll(PollOutcome.RATE_LIMITED, str(exc))

    def _unreachable(self, repo: str, text: str, now: float) -> RepoPoll:
        """A deleted branch or a lost repo: warn once, then re-try it rarely."""
        factor, shortest, longest = GONE_BACKOFF
        wait = min(max(factor * self._settings.github.poll_interval, shortest), longest)
        self._not_before[repo] = now + wait
        self._failing.pop(repo, None)
        if self._gone.get(repo) != text:
            log.warning("%s Merges of %s are not announced until this is fixed.", text, repo)
            if self._problem(repo, f"{text} Merges there are not announced until this is fixed."):
                self._gone[repo] = text
        return RepoPoll(PollOutcome.GONE, text)

    def _trouble(self, repo: str, text: str) -> None:
        """Log a repo's error once while it repeats (a broken token would fill the log otherwise)."""
        if self._failing.get(repo) == text:
            log.debug("Merge poll of %s still failing: %s", repo, text)
            return
        self._failing[repo] = text
        log.warning("Merge poll of %s failed, retried next poll: %s", repo, text)

    def _problem(self, repo: str, text: str, thread: AnnouncementRef | None = None) -> bool:
        """Tell the channel; True if the announcer took it."""
        try:
            self._announcer.announce_problem(repo, text, thread)
        except Exception:
            log.exception("Could not post a problem about %s: %s", repo, text)
            return False
        return True


def _first_parent_line(comparison: Comparison, head: str) -> list[CommitInfo]:
    """The new commits on the branch's own line, newest first (one per merge, or per push)."""
    by_sha = {c.sha: c for c in comparison.commits}
    line: list[CommitInfo] = []
    sha: str | None = head
    while sha is not None and sha in by_sha and len(line) < len(by_sha):
        commit = by_sha[sha]
        line.append(commit)
        sha = commit.parents[0] if commit.parents else None
    if not line and comparison.status != "behind":
        # GitHub listed nothing we can walk (no common history): at least the head itself.
        line.append(CommitInfo(head, "", ()))
    return line
