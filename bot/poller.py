"""One pass of the merge poller over the configured repos: new heads → announcements, auto-deploys.

One process polls at a time (``PollLeader``: the store's poller lease). Delivery: a new head is
claimed in the store (a conditional write from the old head) before it is announced, and only the
claim's winner announces, so a merge is announced once even across a change of poller. The claim
also records the announcement as owed by the claiming process until Slack took it; a poller that
finds one owed by a process whose heartbeat is older than ``state.lease`` takes it over (one
conditional write: one taker) and posts it, so a poller killed with its announcement still queued
loses nothing. A failed announcement gives the claim back and is retried next poll.

Auto-deploys (``on_merge: deploy``) are claimed pending in the same transaction as their head,
then moved on by each poll: queued (in one transaction with the deploy) once CI is green and the
environment unlocked, expired once CI stayed red or pending past ``ci_timeout`` or a newer merge
came. Never twice per repo + env + SHA.

Cost: an unchanged branch is one conditional request answered 304 (no rate-limit unit). A moved
branch costs its 200, one compare, per first-parent commit one pull-request lookup (at most
``MAX_LOOKUPS``) plus one read per merged pull request for its merger, and two reads of CI when
contexts are required. A pending auto-deploy that waits for CI costs two CI reads per poll.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum

from bot.config import RepoSettings, Settings
from bot.errors import BotError, EnvironmentLocked, InvalidRef, RateLimited, StoreError, UnknownRepo
from bot.models import (
    ROBOT,
    Actor,
    ActorKind,
    AnnouncementRef,
    AutoDeploy,
    AutoDeployStatus,
    BranchHead,
    Change,
    CommitInfo,
    Comparison,
    GateResult,
    HeadPoll,
    MergedPull,
    MergeNews,
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
        self._process_id: int | None = None  # the robot process whose claims these are
        self._posting: dict[tuple[str, str], bool] = {}  # repo + SHA handed to Slack → taken
        self._posting_lock = threading.Lock()  # ``posted`` runs on the announcer's thread
        self._advanced: set[tuple[str, str, str]] = set()  # auto-deploys looked at in this pass

    def act_as(self, process_id: int) -> None:
        """Claims are made for the registered process ``process_id`` (its heartbeat says whether
        an announcement it owes is still its own to post)."""
        self._process_id = process_id

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
        if self._pause_reason(now) is None:
            self._advance_auto_deploys(results, now)
        self._advanced.clear()
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
        if stored is not None and stored.owed_from is not None and settings.on_merge != "ignore":
            self._announce_owed(repo, settings, stored)
        poll = self._github.poll_head(repo, settings.branch, stored.etag if stored else None)
        self._note_pacing(repo, poll, now)
        self._heads_asked += 1
        if poll.sha is None:
            self._not_modified += 1
            return RepoPoll(PollOutcome.UNCHANGED)
        head = BranchHead(repo, poll.sha, poll.etag)
        if stored is None:
            if not self._store.claim_head(None, head).claimed:
                return RepoPoll(PollOutcome.UNCHANGED, "recorded by another robot")
            log.info("First poll of %s %s: recorded %s, nothing announced", repo, settings.branch, poll.sha)
            return RepoPoll(PollOutcome.FIRST_SEEN, poll.sha[:7])
        if poll.sha == stored.sha:
            if poll.etag != stored.etag:
                self._store.claim_head(stored.sha, head)
            return RepoPoll(PollOutcome.UNCHANGED)
        if settings.on_merge == "ignore":
            if not self._store.claim_head(stored.sha, head).claimed:
                return RepoPoll(PollOutcome.UNCHANGED, "recorded by another robot")
            return RepoPoll(PollOutcome.RECORDED, poll.sha[:7])
        news = self._news(repo, settings, stored.sha, poll.sha)
        wanted = None
        if settings.on_merge == "deploy":
            deadline = datetime.fromtimestamp(now + settings.ci_timeout, UTC)
            env = settings.auto_deploy_env
            merger = Actor(ActorKind.GITHUB, news.merger) if news.merger else ROBOT
            wanted = AutoDeploy(repo, env, news.sha, AutoDeployStatus.PENDING, str(merger), deadline)
        claim = self._store.claim_head(stored.sha, head, wanted, owed=True, by=self._process_id)
        if not claim.claimed:
            # Another poller (the one before a change of leader) moved this head first: its news.
            self._unsent.pop(repo, None)
            log.info("%s %s moved to %s, claimed by another robot", repo, settings.branch, poll.sha[:7])
            return RepoPoll(PollOutcome.UNCHANGED, "claimed by another robot")
        try:
            where = self._announce(news)
        except Exception:
            self._give_back(head, stored, claim.auto_deploy)
            raise
        self._unsent.pop(repo, None)
        deploy_id, detail = None, f"{stored.sha[:7]}..{poll.sha[:7]}"
        if wanted is not None:
            pending = claim.auto_deploy
            if pending is None:
                detail = f"auto-deploy of {poll.sha[:7]} to {wanted.env} was already requested"
            else:
                if where is not None:
                    self._store.update_auto_deploy(pending, thread=(where.channel, where.ts))
                    pending = replace(pending, channel=where.channel, message_ts=where.ts)
                self._advanced.add((pending.repo, pending.env, pending.sha))
                deploy_id, detail = self._advance_announced(pending, now)
        log.info("Announced %s %s: %s", repo, settings.branch, detail)
        return RepoPoll(PollOutcome.ANNOUNCED, detail, deploy_id)

    def _announce(self, news: MergeNews) -> AnnouncementRef | None:
        """Hand ``news`` to the announcer; once Slack took it, it is owed no more in the store."""
        key = (news.repo, news.sha)
        with self._posting_lock:
            self._posting[key] = False

        def posted(where: AnnouncementRef) -> None:
            with self._posting_lock:
                if self._posting.get(key) is not False:
                    return  # recorded already (the announcer and its return both say so)
                self._posting[key] = True
            self._record_posted(key)

        try:
            where = self._announcer.announce(news, posted)
        except Exception:
            with self._posting_lock:
                self._posting.pop(key, None)
            raise
        if where is not None:
            posted(where)
        return where

    def _record_posted(self, key: tuple[str, str]) -> None:
        """Tell the store an announcement went out; kept for the next poll when it cannot hear it
        (else this process would post it again). Never raises: it runs on the outbox's thread."""
        try:
            self._store.announcement_posted(*key)
        except Exception as exc:
            log.warning("announcement of %s %s not recorded as posted, retried next poll: %s", *key, exc)
            return
        with self._posting_lock:
            self._posting.pop(key, None)

    def _announce_owed(self, repo: str, settings: RepoSettings, stored: BranchHead) -> None:
        """Post an announcement a dead poller claimed and never posted (or this one failed to)."""
        key = (repo, stored.sha)
        with self._posting_lock:
            state = self._posting.get(key)
        if state is True:
            self._record_posted(key)
        if state is not None:
            return  # on its way to Slack from this process
        lease = self._settings.state.lease
        previous = self._store.reclaim_announcement(repo, stored.sha, self._process_id, lease)
        if previous is None:
            return  # its poster is alive (it posts it), or another poller took it over
        said = "%s %s: announcing the merge a stopped robot claimed and never posted"
        log.warning(said, repo, stored.sha[:7])
        news = self._news(repo, settings, previous, stored.sha)
        where = self._announce(news)
        self._unsent.pop(repo, None)
        if where is None or settings.on_merge != "deploy":
            return
        pending = self._store.get_auto_deploy(repo, settings.auto_deploy_env, stored.sha)
        if pending is not None and pending.status is AutoDeployStatus.PENDING and pending.message_ts is None:
            self._store.update_auto_deploy(pending, thread=(where.channel, where.ts))

    def _advance_announced(self, claim: AutoDeploy, now: float) -> tuple[int | None, str]:
        """The just-announced merge's auto-deploy, at once; trouble leaves it pending for next poll."""
        try:
            return self._advance(claim, now)
        except RateLimited as exc:
            self._rate_limited(claim.repo, exc, now)
            return None, f"auto-deploy of {claim.sha[:7]} waits: {exc}"
        except BotError as exc:
            return None, f"auto-deploy of {claim.sha[:7]} waits: {exc}"

    def _give_back(self, claimed: BranchHead, previous: BranchHead, auto_deploy: AutoDeploy | None) -> None:
        """The announcement failed: un-claim the head so that the next poll announces it."""
        try:
            self._store.release_head(claimed, previous, auto_deploy)
        except StoreError as exc:
            log.warning("could not give back the claim of %s %s: %s", claimed.repo, claimed.sha[:7], exc)

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
        contexts = settings.gate
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

    # ---- auto-deploys -----------------------------------------------------------------

    def _advance_auto_deploys(self, results: dict[str, RepoPoll], now: float) -> None:
        """Move every pending auto-deploy on that this pass has not looked at yet."""
        try:
            pending = self._store.pending_auto_deploys()
        except StoreError as exc:
            log.warning("could not read the pending auto-deploys, retried next poll: %s", exc)
            return
        for claim in pending:
            if (claim.repo, claim.env, claim.sha) in self._advanced:
                continue
            try:
                deploy_id, detail = self._advance(claim, now)
            except RateLimited as exc:
                self._rate_limited(claim.repo, exc, now)
                return
            except BotError as exc:
                log.warning("auto-deploy of %s %s: %s (retried next poll)", claim.repo, claim.sha[:7], exc)
                continue
            polled = results.get(claim.repo)
            if polled is None or polled.deploy_id is not None:
                continue
            if deploy_id is not None or (polled.outcome is PollOutcome.UNCHANGED and not polled.detail):
                results[claim.repo] = replace(polled, detail=detail, deploy_id=deploy_id)

    def _advance(self, claim: AutoDeploy, now: float) -> tuple[int | None, str]:
        """One look at a pending auto-deploy: queue it, leave it waiting, or expire it."""
        repo, env, short = claim.repo, claim.env, claim.sha[:7]
        thread = None
        if claim.channel is not None and claim.message_ts is not None:
            thread = AnnouncementRef(claim.channel, claim.message_ts)
        settings = self._settings.repos.get(repo)
        if settings is None or settings.on_merge != "deploy" or env != settings.auto_deploy_env:
            text = f"auto-deploy of {short} to {env} dropped: {repo} no longer deploys merges there"
            self._store.update_auto_deploy(claim, note=text, expire=True)
            return None, text
        head = self._store.get_head(repo)
        if head is not None and head.sha != claim.sha:
            text = f"auto-deploy of {short} to {env} superseded by {head.sha[:7]}"
            self._store.update_auto_deploy(claim, note=text, expire=True)
            return None, text
        lock = self._store.get_lock(repo, env)
        if lock is not None:
            return None, self._held(claim, lock.locked_by, lock.reason, thread)
        if settings.gate:
            ci = self._github.ci_state(repo, claim.sha, settings.gate)
            if not ci.green:
                return None, self._not_green(claim, ci, settings.ci_timeout, now, thread)
        try:
            queued = self._service.request_auto_deploy(claim)
        except EnvironmentLocked as exc:
            text = f"Auto-deploy of {short} to {env} is held: {exc} It starts when {env} is unlocked, " + (
                f"if {short} is still the newest merge."
            )
            self._say_once(claim, text, thread)
            return None, text
        except StoreError as exc:
            log.warning("Auto-deploy of %s %s to %s: %s; retried next poll", repo, short, env, exc)
            return None, f"auto-deploy of {short} to {env} waits: {exc}"
        except BotError as exc:
            text = f"Auto-deploy of {short} to {env} did not start: {exc}"
            if self._store.update_auto_deploy(claim, note=text, expire=True):
                self._problem(repo, text, thread)
            return None, text
        except Exception:
            # Nothing was queued (the claim and the deploy are one transaction): next poll retries.
            log.exception("Auto-deploy of %s %s to %s failed; retried next poll", repo, short, env)
            return None, f"auto-deploy of {short} to {env} failed (robot error, see its log); retried"
        if queued is None:
            return None, f"auto-deploy of {short} to {env} was already requested"
        deploy, _ = queued
        return deploy.id, f"auto-deploy #{deploy.id} of {short} to {env}"

    def _held(self, claim: AutoDeploy, locked_by: str, reason: str, thread: AnnouncementRef | None) -> str:
        short, env = claim.sha[:7], claim.env
        why = f": {reason}" if reason else ""
        text = (
            f"Auto-deploy of {short} to {env} is held: {claim.repo} {env} is locked by {locked_by}{why}. "
            f"It starts when {env} is unlocked, if {short} is still the newest merge."
        )
        self._say_once(claim, text, thread)
        return text

    def _not_green(
        self, claim: AutoDeploy, ci: GateResult, timeout: float, now: float, thread: AnnouncementRef | None
    ) -> str:
        short, env = claim.sha[:7], claim.env
        states = ", ".join(f"{c.name} {c.state.value}" for c in (*ci.failing, *ci.waiting))
        if now >= claim.deadline.timestamp():
            text = f"Auto-deploy of {short} to {env} dropped: CI not green within {timeout:g} s ({states})."
            if self._store.update_auto_deploy(claim, note=text, expire=True):
                self._problem(claim.repo, text, thread)
            return text
        if ci.failing:
            text = (
                f"Auto-deploy of {short} to {env} waits: CI failed ({states}). It deploys if CI is re-run "
                f"green within {timeout:g} s of the merge."
            )
            self._say_once(claim, text, thread)
            return text
        return f"auto-deploy of {short} to {env} waits for CI ({states})"

    def _say_once(self, claim: AutoDeploy, text: str, thread: AnnouncementRef | None) -> None:
        """Post ``text`` about a pending auto-deploy unless it was said already (by any robot)."""
        if self._store.update_auto_deploy(claim, note=text):
            self._problem(claim.repo, text, thread)

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


class PollLeader:
    """Runs the poller in the one process that holds the store's poller lease; every robot has one.

    ``tick`` is called every few seconds (more often than the lease runs out): it takes or renews
    the lease, and polls when it holds it and ``interval`` has passed since its last poll. A
    process that gains the lease polls at once, so when a leader dies another polls within
    ``lease`` + one tick.
    """

    def __init__(
        self,
        poller: Poller,
        store: PollStore,
        process_id: int,
        lease: float,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._poller = poller
        poller.act_as(process_id)
        self._store = store
        self._process_id = process_id
        self._lease = lease
        self._interval = interval
        self._clock = clock
        self._leading = False
        self._next_poll = 0.0
        self._resigned = False
        self._lease_lock = threading.Lock()  # a tick under way cannot take the lease back after resign

    @property
    def leading(self) -> bool:
        """Whether this process held the lease at its last tick."""
        return self._leading

    def tick(self) -> PollReport | None:
        """Take or keep the lease, and poll if it is this process's turn; None when it did not poll."""
        with self._lease_lock:
            if self._resigned:
                return None
            try:
                leading = self._store.lead_poller(self._process_id, self._lease)
            except StoreError as exc:
                log.warning("cannot reach the store to lead the merge poller, trying again: %s", exc)
                leading = False
        if leading != self._leading:
            self._leading = leading
            self._next_poll = 0.0
            log.info("merge polling: %s", "this robot polls now" if leading else "another robot polls now")
        if not leading or self._clock() + JITTER < self._next_poll:
            return None
        self._next_poll = self._clock() + self._interval
        return self._poller.poll_once()

    def resign(self) -> None:
        """Give the lease up for good (a clean stop), so another process polls at once."""
        with self._lease_lock:
            self._resigned = True
            self._leading = False
            try:
                self._store.resign_poller(self._process_id)
            except StoreError as exc:
                log.warning("could not give up the merge poller lease (it runs out on its own): %s", exc)


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
