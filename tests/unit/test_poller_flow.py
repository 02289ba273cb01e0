"""Poller on in-memory ports: first sight, one announcement per new head, 304s, auto-deploy, pauses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.errors import RateLimited
from bot.models import AnnouncementRef, BranchHead, DeployState, HeadPoll, Source
from bot.poller import Poller, PollOutcome
from tests.fakes.memory import RecordingAnnouncer
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
