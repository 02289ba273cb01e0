"""Poller on in-memory ports: first sight, one announcement per new head, 304s, auto-deploy, pauses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.errors import RateLimited
from bot.models import (
    AnnouncementRef,
    AutoDeploy,
    AutoDeployStatus,
    BranchHead,
    ContextState,
    DeployState,
    HeadClaim,
    HeadPoll,
    Source,
)
from bot.poller import Poller, PollLeader, PollOutcome
from tests.fakes.memory import MemoryStore, RecordingAnnouncer
from tests.support.harness import slack_user
from tests.unit.conftest import API, World, WorldFactory, commands_env

WEB = "acme/web"


class Clock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def repos(folder: Path, **api: Any) -> dict[str, Any]:
    envs = {"staging": commands_env(folder), "production": commands_env(folder)}
    return {API: {"environments": envs, **api}, WEB: {"environments": envs}}


def poller(world: World) -> tuple[Poller, RecordingAnnouncer, Clock]:
    announcer, clock = RecordingAnnouncer(), Clock()
    return (
        Poller(world.settings, world.github, world.store, world.service, announcer, clock),
        announcer,
        clock,
    )


def test_first_poll_records_and_announces_nothing(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(repos(tmp_path / "checkout", on_merge="deploy"))
    poll, announcer, _ = poller(world)
    assert poll.poll_once().with_outcome(PollOutcome.FIRST_SEEN) == [API, WEB]
    head = world.store.get_head(API)
    assert head is not None and head.sha == world.github.refs[API]["main"] and head.etag
    assert announcer.news == [] and world.store.list_deploys() == []
    assert poll.poll_once().with_outcome(PollOutcome.UNCHANGED) == [API, WEB]


def test_a_merge_is_announced_once_with_its_pull_request(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(repos(tmp_path / "checkout"))
    poll, announcer, _ = poller(world)
    before = world.github.refs[API]["main"]
    poll.poll_once()
    sha = world.github.merge_pull(API, 123, author="alice", merger="bob")
    assert poll.poll_once().repos[API].outcome is PollOutcome.ANNOUNCED
    (news,) = announcer.news
    assert (news.sha, news.previous_sha, news.merger) == (sha, before, "bob")
    assert [p.number for p in news.pulls] == [123] and not news.forced
    assert news.environments == ("staging", "production") and news.auto_deploy_env is None
    assert poll.poll_once().repos[API].outcome is PollOutcome.UNCHANGED
    assert len(announcer.news) == 1 and world.store.list_deploys() == []


def test_a_304_changes_nothing(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(repos(tmp_path / "checkout"))
    poll, announcer, _ = poller(world)
    poll.poll_once()
    stored = world.store.get_head(API)
    world.github.queue_head_poll(API, HeadPoll(None, "W/etag-unchanged"))
    assert poll.poll_once().repos[API].outcome is PollOutcome.UNCHANGED
    assert world.store.get_head(API) == stored and announcer.news == []


def test_a_failed_announcement_is_retried_not_lost(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(repos(tmp_path / "checkout"))
    poll, announcer, _ = poller(world)
    poll.poll_once()
    sha = world.github.push(API)
    announcer.fail_next = 1
    assert poll.poll_once().repos[API].outcome is PollOutcome.FAILED
    head = world.store.get_head(API)
    assert head is not None and head.sha != sha
    assert poll.poll_once().repos[API].outcome is PollOutcome.ANNOUNCED
    assert [n.sha for n in announcer.news] == [sha]


def test_auto_deploy_is_requested_once_per_repo_env_sha(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(repos(tmp_path / "checkout", on_merge="deploy", auto_deploy="staging"))
    poll, announcer, _ = poller(world)
    poll.poll_once()
    sha = world.github.merge_pull(API, 42, author="alice", merger="bob")
    result = poll.poll_once().repos[API]
    assert result.outcome is PollOutcome.ANNOUNCED and result.deploy_id is not None
    deploy = world.service.get(result.deploy_id)
    assert (deploy.sha, deploy.env, deploy.source, deploy.requested_by) == (
        sha,
        "staging",
        Source.MERGE,
        "github:bob",
    )
    assert (deploy.channel, deploy.message_ts) == ("C0DEPLOYS", "1700000000.000001")
    assert world.run(deploy.id).state is DeployState.SUCCEEDED
    # A robot that died before recording the head announces again, but deploys nothing twice.
    world.store.set_head(BranchHead(API, announcer.news[0].previous_sha, None))
    again = poll.poll_once().repos[API]
    assert again.outcome is PollOutcome.ANNOUNCED and again.deploy_id is None
    assert "already requested" in again.detail
    assert [d.id for d in world.store.list_deploys(API)] == [deploy.id]


def test_a_locked_env_holds_the_auto_deploy_and_says_so(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(repos(tmp_path / "checkout", on_merge="deploy", auto_deploy="production"))
    poll, announcer, _ = poller(world)
    poll.poll_once()
    world.service.lock(API, "production", slack_user("U7"), "release freeze")
    sha = world.github.push(API)
    assert poll.poll_once().repos[API].deploy_id is None
    ((repo, text, thread),) = announcer.problems
    assert repo == API and thread == AnnouncementRef("C0DEPLOYS", "1700000000.000001")
    assert f"Auto-deploy of {sha[:7]} to production is held" in text and "release freeze" in text
    assert world.store.list_deploys() == []


def test_retry_after_pauses_every_repo_until_it_passes(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(repos(tmp_path / "checkout"))
    poll, _, clock = poller(world)
    poll.poll_once()
    world.github.queue_head_poll(API, RateLimited("GitHub secondary rate limit", 120, None))
    report = poll.poll_once()
    assert report.with_outcome(PollOutcome.RATE_LIMITED) == [API, WEB]
    assert report.paused_until == pytest.approx(clock.now + 120)
    asked = len(world.github.head_poll_calls)
    clock.now += 90
    assert poll.poll_once().with_outcome(PollOutcome.RATE_LIMITED) == [API, WEB]
    assert len(world.github.head_poll_calls) == asked  # nothing asked while GitHub said wait
    clock.now += 31
    assert poll.poll_once().with_outcome(PollOutcome.UNCHANGED) == [API, WEB]


def test_low_remaining_pauses_until_the_reset(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(repos(tmp_path / "checkout"))
    poll, _, clock = poller(world)
    sha = world.github.refs[API]["main"]
    reset = clock.now + 3000
    world.github.queue_head_poll(API, HeadPoll(sha, f'"{sha}"', limit=5000, remaining=399, reset=reset))
    report = poll.poll_once()
    assert report.repos[API].outcome is PollOutcome.FIRST_SEEN
    assert report.repos[WEB].outcome is PollOutcome.RATE_LIMITED and "399 of 5000" in report.repos[WEB].detail
    clock.now = reset + 2
    assert poll.poll_once().repos[WEB].outcome is PollOutcome.FIRST_SEEN


def test_x_poll_interval_is_respected_per_repo(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(repos(tmp_path / "checkout"))
    poll, _, clock = poller(world)
    sha = world.github.refs[API]["main"]
    world.github.queue_head_poll(API, HeadPoll(sha, f'"{sha}"', poll_interval=60))
    poll.poll_once()
    clock.now += 30
    report = poll.poll_once()
    outcomes = (report.repos[API].outcome, report.repos[WEB].outcome)
    assert outcomes == (PollOutcome.WAITING, PollOutcome.UNCHANGED)
    clock.now += 30
    assert poll.poll_once().repos[API].outcome is PollOutcome.UNCHANGED


# ---- claims: one announcement, one auto-deploy, whoever polls ----------------------------


class StaleHeads:
    """The store as a poller saw it just before another poller moved the head (a lost race)."""

    def __init__(self, store: MemoryStore) -> None:
        self.inner = store
        self.seen = {repo: store.get_head(repo) for repo in (API, WEB)}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get_head(self, repo: str) -> BranchHead | None:
        return self.seen[repo]


def test_a_head_claimed_by_one_poller_is_not_announced_by_another(
    world_for: WorldFactory, tmp_path: Path
) -> None:
    world = world_for(repos(tmp_path / "checkout", on_merge="deploy", auto_deploy="staging"))
    first, first_said, clock = poller(world)
    first.poll_once()
    stale = StaleHeads(world.store)
    late_said = RecordingAnnouncer()
    late = Poller(world.settings, world.github, stale, world.service, late_said, clock)
    sha = world.github.merge_pull(API, 7, author="alice", merger="bob")
    assert first.poll_once().repos[API].outcome is PollOutcome.ANNOUNCED
    result = late.poll_once().repos[API]
    assert (result.outcome, result.detail) == (PollOutcome.UNCHANGED, "claimed by another robot")
    assert [n.sha for n in first_said.news] == [sha] and late_said.news == []
    assert len(world.store.list_deploys(API)) == 1


def test_claim_rules_on_the_store(world_for: WorldFactory, tmp_path: Path) -> None:
    store = world_for(repos(tmp_path / "checkout")).store
    old, new, newer = (
        BranchHead(API, "a" * 40, '"a"'),
        BranchHead(API, "b" * 40, '"b"'),
        BranchHead(API, "c" * 40),
    )
    assert store.claim_head(None, old).claimed
    assert not store.claim_head(None, old).claimed, "a first sighting is claimed once"
    deadline = datetime.now(UTC)
    wanted = AutoDeploy(API, "staging", new.sha, AutoDeployStatus.PENDING, "bob", deadline)
    won = store.claim_head(old.sha, new, wanted)
    assert won.claimed and won.auto_deploy is not None and won.auto_deploy.status is AutoDeployStatus.PENDING
    assert not store.claim_head(old.sha, new, wanted).claimed, "a move from the old head is claimed once"
    # The announcement failed: the head and its ETag go back, the pending auto-deploy with them.
    assert store.release_head(new, old, won.auto_deploy)
    assert store.get_head(API) == old and store.get_auto_deploy(API, "staging", new.sha) is None
    assert store.claim_head(old.sha, new, wanted).auto_deploy is not None
    # Re-announcing the same SHA never claims its auto-deploy twice.
    store.set_head(old)
    assert store.claim_head(old.sha, new, wanted) == HeadClaim(True, None)
    # A newer merge expires the older pending auto-deploy in the same transaction.
    newest = AutoDeploy(API, "staging", newer.sha, AutoDeployStatus.PENDING, "bob", deadline)
    assert store.claim_head(new.sha, newer, newest).auto_deploy is not None
    older = store.get_auto_deploy(API, "staging", new.sha)
    assert (
        older is not None and older.status is AutoDeployStatus.EXPIRED and "superseded" in (older.note or "")
    )
    assert [a.sha for a in store.pending_auto_deploys()] == [newer.sha]
    # A note is said once; a queued auto-deploy is queued once.
    assert store.update_auto_deploy(newest, note="held") and not store.update_auto_deploy(newest, note="held")
    world = world_for(repos(tmp_path / "checkout"))
    world.store.claim_head(None, old)
    world.store.claim_head(old.sha, newer, newest)
    queued = world.service.request_auto_deploy(newest)
    assert queued is not None and queued[1]
    assert world.service.request_auto_deploy(newest) is None
    done = world.store.get_auto_deploy(API, "staging", newer.sha)
    assert done is not None and (done.status, done.deploy_id) == (AutoDeployStatus.QUEUED, queued[0].id)


def ci_repos(folder: Path, timeout: float = 600) -> dict[str, Any]:
    return repos(
        folder, on_merge="deploy", auto_deploy="staging", required_contexts=["ci"], ci_timeout=timeout
    )


def test_red_ci_rerun_green_within_ci_timeout_deploys_once(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(ci_repos(tmp_path / "checkout"))
    poll, announcer, clock = poller(world)
    poll.poll_once()
    sha = world.github.push(API)
    world.github.script_ci(API, sha, {"ci": ContextState.FAILURE})
    result = poll.poll_once().repos[API]
    assert result.outcome is PollOutcome.ANNOUNCED and result.deploy_id is None
    clock.now += 30
    assert poll.poll_once().repos[API].deploy_id is None
    ((_, text, thread),) = announcer.problems  # said once, in the announcement's thread
    assert "CI failed (ci failure)" in text and "re-run green within 600 s" in text and thread is not None
    assert world.store.list_deploys() == []
    world.github.script_ci(API, sha, {"ci": ContextState.PENDING})  # re-run
    clock.now += 30
    assert poll.poll_once().repos[API].deploy_id is None
    world.github.green(API, sha, "ci")
    clock.now += 30
    deploy_id = poll.poll_once().repos[API].deploy_id
    assert deploy_id is not None
    for _ in range(3):
        clock.now += 30
        assert poll.poll_once().repos[API].deploy_id is None
    (deploy,) = world.store.list_deploys()
    assert (deploy.id, deploy.sha, deploy.source, deploy.message_ts) == (
        deploy_id,
        sha,
        Source.MERGE,
        "1700000000.000001",
    )


def test_ci_not_green_within_ci_timeout_expires_the_auto_deploy(
    world_for: WorldFactory, tmp_path: Path
) -> None:
    world = world_for(ci_repos(tmp_path / "checkout", timeout=120))
    poll, announcer, clock = poller(world)
    poll.poll_once()
    sha = world.github.push(API)
    world.github.script_ci(API, sha, {"ci": ContextState.PENDING})
    poll.poll_once()
    clock.now += 121
    assert "dropped: CI not green within 120 s (ci pending)" in poll.poll_once().repos[API].detail
    world.github.green(API, sha, "ci")
    clock.now += 30
    assert poll.poll_once().repos[API].deploy_id is None and world.store.list_deploys() == []
    assert len(announcer.problems) == 1
    expired = world.store.get_auto_deploy(API, "staging", sha)
    assert expired is not None and expired.status is AutoDeployStatus.EXPIRED


def test_a_lock_holds_the_auto_deploy_until_unlocked_if_still_newest(
    world_for: WorldFactory, tmp_path: Path
) -> None:
    world = world_for(repos(tmp_path / "checkout", on_merge="deploy", auto_deploy="production"))
    poll, announcer, _ = poller(world)
    poll.poll_once()
    world.service.lock(API, "production", slack_user("U7"), "release freeze")
    held = world.github.push(API)
    poll.poll_once()
    world.service.unlock(API, "production", slack_user("U7"))
    deploy_id = poll.poll_once().repos[API].deploy_id
    assert deploy_id is not None and world.service.get(deploy_id).sha == held
    assert "It starts when production is unlocked" in announcer.problems[0][1]
    # Held again; a newer merge comes while locked: only the newest deploys after the unlock.
    world.service.lock(API, "production", slack_user("U7"), "again")
    older = world.github.push(API)
    poll.poll_once()
    newest = world.github.push(API)
    poll.poll_once()
    world.service.unlock(API, "production", slack_user("U7"))
    poll.poll_once()
    assert [d.sha for d in world.store.list_deploys(API)] == [newest, held]
    dropped = world.store.get_auto_deploy(API, "production", older)
    assert dropped is not None and dropped.status is AutoDeployStatus.EXPIRED


def test_a_crash_between_claim_and_queue_loses_nothing(world_for: WorldFactory, tmp_path: Path) -> None:
    world = world_for(repos(tmp_path / "checkout", on_merge="deploy", auto_deploy="staging"))
    poll, _, _ = poller(world)
    poll.poll_once()
    sha = world.github.push(API)
    world.store.fail_queue_auto = True
    result = poll.poll_once().repos[API]
    assert result.outcome is PollOutcome.ANNOUNCED and result.deploy_id is None
    pending = world.store.get_auto_deploy(API, "staging", sha)
    assert pending is not None and pending.status is AutoDeployStatus.PENDING
    assert world.store.list_deploys() == []
    world.store.fail_queue_auto = False
    # The next poll (this robot's or another's after a restart) queues it, once.
    restarted, _, _ = poller(world)
    deploy_id = restarted.poll_once().repos[API].deploy_id
    assert deploy_id is not None and poll.poll_once().repos[API].deploy_id is None
    assert [d.sha for d in world.store.list_deploys()] == [sha]


class StoreClock:
    """The time every process reads from the store; tests move it to run leases out."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_one_leader_polls_and_another_takes_over_after_the_lease(
    world_for: WorldFactory, tmp_path: Path
) -> None:
    world = world_for(repos(tmp_path / "checkout"))
    store_clock = StoreClock()
    world.store.clock = store_clock
    polls = [poller(world) for _ in range(2)]
    ticks = [0.0]
    leaders = [
        PollLeader(p, world.store, process_id, lease=30, interval=10, clock=lambda: ticks[0])
        for process_id, (p, _, _) in enumerate(polls, start=1)
    ]
    assert leaders[0].tick() is not None and leaders[1].tick() is None
    assert (leaders[0].leading, leaders[1].leading) == (True, False)
    ticks[0] += 5
    assert leaders[0].tick() is None, "the leader polls every interval, not every tick"
    ticks[0] += 5
    store_clock.now += timedelta(seconds=10)
    assert leaders[0].tick() is not None and leaders[1].tick() is None
    sha = world.github.push(API)
    # The leader dies (no more ticks): the other leads once the lease ran out, and polls at once.
    store_clock.now += timedelta(seconds=29)
    assert leaders[1].tick() is None
    store_clock.now += timedelta(seconds=2)
    report = leaders[1].tick()
    assert report is not None and report.repos[API].outcome is PollOutcome.ANNOUNCED
    assert [n.sha for n in polls[1][1].news] == [sha] and polls[0][1].news == []
    # A clean stop hands over at once.
    leaders[1].resign()
    assert not leaders[1].leading and leaders[1].tick() is None, "a resigned leader never leads again"
    ticks[0] += 10
    assert leaders[0].tick() is not None and leaders[0].leading and leaders[1].tick() is None
