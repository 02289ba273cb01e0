"""The App Home dashboard as values: per repo + environment what runs, waits and ran, and who may act."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from bot.approvals import approval_settings
from bot.config import Settings
from bot.deploys import DeployService
from bot.dora import DoraReport
from bot.errors import StoreError
from bot.models import (
    ACTIVE_STATES,
    Actor,
    ActorKind,
    Approval,
    Deploy,
    DeployState,
    Lock,
    RollbackChoice,
)
from bot.ports import StorePort
from bot.stats import DoraStats

log = logging.getLogger(__name__)

ACTIVE_LIMIT = 1000
"""Active deploys read per dashboard: far above what any queue holds."""
DORA_TTL_SECONDS = 60.0
"""How long the Home's DORA figures are reused: figures over 30 days need no per-deploy freshness,
and a deploy burst would otherwise read the 84 days behind them again for every change."""
_COMPARABLE = frozenset({"ahead", "behind", "identical", "diverged"})
"""GitHub's compare statuses that count commits (``unrelated``: no common history, no count)."""


@dataclass(frozen=True)
class Awaiting:
    """A deploy awaiting approval: who approved it so far (``kind:name``) of how many it needs."""

    deploy: Deploy
    approved_by: tuple[str, ...]
    required: int


@dataclass(frozen=True)
class PendingChanges:
    """What **Deploy <branch>** would ship, from a comparison some process cached: the commits
    the head has that ``base_sha`` (what runs there now) has not, and the ones it lacks."""

    base_sha: str
    ahead: int
    behind: int = 0


@dataclass(frozen=True)
class EnvCard:
    """One environment of one repo as a user's App Home shows it, with the buttons they may use."""

    repo: str
    env: str
    branch: str
    head_sha: str | None
    """The branch head the merge poller last saw: what **Deploy <branch>** deploys (None: not seen yet)."""
    current: Deploy | None
    """The newest succeeded deploy: what runs there now."""
    current_url: str | None
    """The current commit's web page."""
    running: Deploy | None
    current_step: str | None
    waiting: tuple[Deploy, ...]
    queued: int
    lock: Lock | None
    last_failure: Deploy | None
    may_deploy: bool
    may_lock: bool
    cancellable: frozenset[int]
    """The ids of this card's running, waiting and awaiting-approval deploys the user may cancel."""
    awaiting: tuple[Awaiting, ...] = ()
    pending: PendingChanges | None = None
    """The head against the current SHA when that comparison is cached (None: not known here)."""
    rollback_to: Deploy | None = None
    """The store's rollback choice: the succeeded deploy **Roll back** would deploy again
    (undoing ``current``); None when there is none."""
    may_roll_back: bool = False
    approvable: frozenset[int] = frozenset()
    """The awaiting deploys the user may approve (an approver, not the requester, not yet approved)."""
    rejectable: frozenset[int] = frozenset()
    """The awaiting deploys the user may reject (an approver, not the requester)."""


@dataclass(frozen=True)
class RepoCards:
    """A repo's environments, in config order."""

    repo: str
    envs: tuple[EnvCard, ...]


@dataclass(frozen=True)
class HomePage:
    """One user's App Home: the repo filter's choices and the repos shown."""

    user: str  # "" in a snapshot: nobody's rights applied yet
    repos: tuple[str, ...]
    """Every configured repo, the most recently deployed first (the filter's options)."""
    repo_filter: str | None
    shown: tuple[RepoCards, ...]
    hidden: int
    """Repos left out to stay within Slack's block limit (the filter reaches them)."""
    dora: DoraReport | None = None
    """The DORA figures of the filtered repo, or of every repo (None: this robot shows none)."""


class Dashboard:
    """Reads the store into HomePage values, then applies one user's rights; renders nothing."""

    def __init__(
        self,
        settings: Settings,
        store: StorePort,
        service: DeployService,
        commit_url: Callable[[str, str], str],
        current_step: Callable[[int], str | None] = lambda deploy_id: None,
        stats: DoraStats | None = None,
    ) -> None:
        self._settings = settings
        self._commit_url = commit_url
        self._store = store
        self._service = service
        self._current_step = current_step
        self._stats = stats
        self._dora: dict[str | None, tuple[float, DoraReport]] = {}
        self._dora_lock = threading.Lock()
        # Each environment's last rollback choice (a dict's get and set are atomic: listener
        # threads share it, and a lost write costs one read).
        self._choices: dict[tuple[str, str], RollbackChoice] = {}

    @property
    def shows_dora(self) -> bool:
        """Whether pages carry the DORA figures (their blocks then take room from the repos)."""
        return self._stats is not None

    def repos_by_activity(self) -> tuple[str, ...]:
        """Configured repos, the one with the newest deploy first (never deployed: config order, last)."""
        newest: dict[str, int] = {}
        for repo in self._settings.repos:
            last = self._store.list_deploys(repo, limit=1)
            newest[repo] = last[0].id if last else 0
        order = list(self._settings.repos)
        return tuple(sorted(order, key=lambda repo: (-newest[repo], order.index(repo))))

    def configured(self, repo: str) -> bool:
        """Whether robot.yaml names ``repo`` (a filter choice is checked against the config)."""
        return repo in self._settings.repos

    def env_counts(self, repos: Sequence[str]) -> list[int]:
        """How many environments each repo has (what a page of them costs in blocks)."""
        return [len(self._settings.repos[repo].environments) for repo in repos]

    def snapshot(self, repo_filter: str | None, fits: Callable[[list[int]], int]) -> HomePage:
        """What every user's page shows, without anyone's rights (no buttons): the repos by activity,
        then the filtered repo, or as many as ``fits`` says fit (given their environment counts)."""
        repos = self.repos_by_activity()
        if repo_filter is not None and repo_filter in self._settings.repos:
            picked: Sequence[str] = [repo_filter]
        else:
            repo_filter = None
            picked = repos[: fits(self.env_counts(repos))]
        active: dict[tuple[str, str], list[Deploy]] = {}
        for deploy in self._store.list_deploys(states=ACTIVE_STATES, limit=ACTIVE_LIMIT):
            active.setdefault((deploy.repo, deploy.env), []).append(deploy)
        locks = {(lock.repo, lock.env): lock for lock in self._store.list_locks()}
        approvals = self._approvals([d for (repo, _), ds in active.items() if repo in picked for d in ds])
        cards = tuple(RepoCards(repo, self._cards(repo, active, locks, approvals)) for repo in picked)
        return HomePage(
            "", repos, repo_filter, cards, len(repos) - len(picked), self._dora_report(repo_filter)
        )

    def _dora_report(self, repo_filter: str | None) -> DoraReport | None:
        """The DORA figures for this filter, read again once DORA_TTL_SECONDS old."""
        if self._stats is None:
            return None
        now = time.monotonic()
        with self._dora_lock:
            cached = self._dora.get(repo_filter)
        if cached is not None and now - cached[0] < DORA_TTL_SECONDS:
            return cached[1]
        report = self._stats.report(repo_filter)
        with self._dora_lock:
            self._dora[repo_filter] = (now, report)
        return report

    def for_user(self, snapshot: HomePage, user: str) -> HomePage:
        """``snapshot`` with the buttons ``user`` may use (the service's rights; no store reads)."""
        actor = Actor(ActorKind.SLACK, user)
        shown = []
        for repo in snapshot.shown:
            may_deploy = self._service.may_deploy(actor, repo.repo)
            may_lock = self._service.may_lock(actor, repo.repo)
            envs = tuple(self._card_for(actor, card, may_deploy, may_lock) for card in repo.envs)
            shown.append(RepoCards(repo.repo, envs))
        return replace(snapshot, user=user, shown=tuple(shown))

    def _card_for(self, actor: Actor, card: EnvCard, may_deploy: bool, may_lock: bool) -> EnvCard:
        """``card`` with the buttons ``actor`` may use."""
        may_approve = self._service.may_approve
        rejectable = frozenset(a.deploy.id for a in card.awaiting if may_approve(actor, a.deploy))
        mine = str(actor)
        return replace(
            card,
            may_deploy=may_deploy,
            may_lock=may_lock,
            cancellable=frozenset(
                d.id
                for d in (card.running, *card.waiting, *(a.deploy for a in card.awaiting))
                if d and self._service.may_cancel(actor, d)
            ),
            # Rolling back is a deployers' right, as deploying is (DeployService.rollback_to).
            may_roll_back=may_deploy,
            approvable=frozenset(
                a.deploy.id for a in card.awaiting if a.deploy.id in rejectable and mine not in a.approved_by
            ),
            rejectable=rejectable,
        )

    def _cards(
        self,
        repo: str,
        active: dict[tuple[str, str], list[Deploy]],
        locks: dict[tuple[str, str], Lock],
        approvals: Mapping[int, tuple[str, ...]],
    ) -> tuple[EnvCard, ...]:
        settings = self._settings.repos[repo]
        head = self._store.get_head(repo)
        head_sha = head.sha if head is not None else None
        cards = []
        for env in settings.environments:
            here = sorted(active.get((repo, env), []), key=lambda d: d.id)
            running = next((d for d in here if d.state is DeployState.RUNNING), None)
            choice = self._rollback_choice(repo, env)
            current = choice.current
            cards.append(
                EnvCard(
                    repo=repo,
                    env=env,
                    branch=settings.branch,
                    head_sha=head_sha,
                    current=current,
                    current_url=self._commit_url(repo, current.sha) if current else None,
                    running=running,
                    current_step=self._current_step(running.id) if running else None,
                    waiting=tuple(d for d in here if d.state is DeployState.WAITING),
                    queued=sum(d.state is DeployState.QUEUED for d in here),
                    lock=locks.get((repo, env)),
                    last_failure=_first(self._store.list_deploys(repo, env, [DeployState.FAILED], limit=1)),
                    may_deploy=False,
                    may_lock=False,
                    cancellable=frozenset(),
                    awaiting=tuple(
                        Awaiting(d, approvals.get(d.id, ()), self._required(d))
                        for d in here
                        if d.state is DeployState.AWAITING_APPROVAL
                    ),
                    pending=self._pending(repo, current, head_sha),
                    rollback_to=choice.target if current is not None else None,
                )
            )
        return tuple(cards)

    def _rollback_choice(self, repo: str, env: str) -> RollbackChoice:
        """The store's rollback choice, read again only once a newer deploy succeeded there.

        Final states never change and an environment's deploys succeed in id order, so the
        choice follows from its newest succeeded deploy (one cheap read), and the three reads
        of ``rollback_choice`` are paid once per success, not per Home. A choice gone stale
        some other way is refused on the click (``rollback_to`` checks it again).
        """
        newest = _first(self._store.list_deploys(repo, env, [DeployState.SUCCEEDED], limit=1))
        if newest is None:
            return RollbackChoice(repo, env, None, None)
        known = self._choices.get((repo, env))
        if known is not None and known.current is not None and known.current.id == newest.id:
            return replace(known, current=newest)  # its state as read now
        choice = self._store.rollback_choice(repo, env)
        self._choices[(repo, env)] = choice
        return choice

    def _approvals(self, deploys: Sequence[Deploy]) -> Mapping[int, tuple[str, ...]]:
        """Who approved each of these deploys awaiting approval so far (one read for them all)."""
        ids = [d.id for d in deploys if d.state is DeployState.AWAITING_APPROVAL]
        if not ids:
            return {}
        given: Mapping[int, tuple[Approval, ...]] = self._store.list_approvals(ids)
        return {deploy_id: tuple(a.approver for a in found) for deploy_id, found in given.items()}

    def _required(self, deploy: Deploy) -> int:
        approvals = approval_settings(self._settings, deploy.repo, deploy.env)
        return approvals.required if approvals is not None else 1

    def _pending(self, repo: str, current: Deploy | None, head: str | None) -> PendingChanges | None:
        """The head against the current SHA from the comparison cache only: a Home never waits
        on GitHub (a pair nobody compared yet is not known here)."""
        if current is None or head is None:
            return None
        if current.sha == head:
            return PendingChanges(current.sha, 0)
        try:
            cached = self._store.get_comparison(repo, current.sha, head)
        except StoreError as exc:
            log.warning("%s: comparison cache unreadable: %s", repo, exc)
            return None
        if cached is None or cached.status not in _COMPARABLE:
            return None
        return PendingChanges(current.sha, max(cached.ahead_by, len(cached.commits)), cached.behind_by)


def _first(deploys: Sequence[Deploy]) -> Deploy | None:
    return deploys[0] if deploys else None
