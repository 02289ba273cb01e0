"""A claimed merge's announcement is owed until Slack took it; a dead poller's is posted by the next.

The store contract runs on MemoryStore and SqlStore (SQLite); the poller's side on in-memory ports.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.models import AnnouncementRef, BranchHead, MergeNews, ProcessInfo, ProcessKind
from bot.poller import Poller, PollOutcome
from bot.store import SqlStore
from tests.fakes.memory import MemoryStore, RecordingAnnouncer
from tests.unit.conftest import API, WorldFactory, commands_env

OLD, NEW, NEWER = "a" * 40, "b" * 40, "c" * 40
LEASE = 30.0


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryStore()
        return
    sql = SqlStore.from_url(f"sqlite:///{tmp_path / 'owed.db'}")
    yield sql
    sql.close()


def robot(store: Any, pid: int) -> int:
    return int(store.register_process(ProcessInfo("host-a", pid, "boot-1", ProcessKind.RUN)).id)


def test_a_claimed_move_is_owed_by_its_claimer_until_posted(store: Any) -> None:
    poster = robot(store, 1)
    assert store.claim_head(None, BranchHead(API, OLD)).claimed
    assert store.get_head(API) == BranchHead(API, OLD), "a first sighting owes nothing"
    assert store.claim_head(OLD, BranchHead(API, NEW, "e1"), owed=True, by=poster).claimed
    assert store.get_head(API) == BranchHead(API, NEW, "e1", OLD, poster)
    # A new ETag for the same SHA leaves what is owed alone.
    assert store.claim_head(NEW, BranchHead(API, NEW, "e2")).claimed
    assert store.get_head(API) == BranchHead(API, NEW, "e2", OLD, poster)
    assert store.announcement_posted(API, NEW)
    assert not store.announcement_posted(API, NEW), "recorded once"
    assert store.get_head(API) == BranchHead(API, NEW, "e2")


def test_an_owed_announcement_is_taken_over_only_from_a_dead_poster_and_once(store: Any) -> None:
    dead, alive, late = robot(store, 1), robot(store, 2), robot(store, 3)
    store.claim_head(None, BranchHead(API, OLD))
    store.claim_head(OLD, BranchHead(API, NEW), owed=True, by=dead)
    assert store.reclaim_announcement(API, NEW, alive, LEASE) is None, "its poster beats: it posts"
    assert store.reclaim_announcement(API, OLD, alive, 0.0) is None, "not the owed move"
    # With no lease left every heartbeat is too old: the poster is dead.
    assert store.reclaim_announcement(API, NEW, alive, 0.0) == OLD
    assert store.get_head(API).owed_by == alive
    assert store.reclaim_announcement(API, NEW, late, LEASE) is None, "one taker"
    assert store.reclaim_announcement(API, NEW, alive, LEASE) == OLD, "its own, again (a failed post)"
    assert store.announcement_posted(API, NEW)
    assert store.reclaim_announcement(API, NEW, late, 0.0) is None, "nothing owed any more"


def test_a_claim_given_back_and_a_silent_move_owe_nothing(store: Any) -> None:
    poster = robot(store, 1)
    store.claim_head(None, BranchHead(API, OLD))
    store.claim_head(OLD, BranchHead(API, NEW), owed=True, by=poster)
    assert store.release_head(BranchHead(API, NEW), BranchHead(API, OLD), None)
    assert store.get_head(API) == BranchHead(API, OLD)
    store.claim_head(OLD, BranchHead(API, NEW), owed=True, by=poster)
    store.claim_head(NEW, BranchHead(API, NEWER))  # on_merge: ignore
    assert store.get_head(API) == BranchHead(API, NEWER)


class QueuedAnnouncer(RecordingAnnouncer):
    """Takes the news and never hears back from Slack: the post is still queued (or its process died)."""

    def announce(
        self, news: MergeNews, posted: Callable[[AnnouncementRef], None] | None = None
    ) -> AnnouncementRef | None:
        super().announce(news)
        return None


class Clock:
    """The store's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_the_next_poller_posts_what_a_dead_one_owed_once(world_for: WorldFactory, tmp_path: Path) -> None:
    clock = Clock()
    envs = {"staging": commands_env(tmp_path / "checkout")}
    world = world_for({API: {"environments": envs}}, store=MemoryStore(clock))
    first, second = robot(world.store, 1), robot(world.store, 2)
    queued, heard = QueuedAnnouncer(), RecordingAnnouncer()
    dying = Poller(world.settings, world.github, world.store, world.service, queued)
    dying.act_as(first)
    dying.poll_once()
    sha = world.github.merge_pull(API, 7, author="alice", merger="bob")
    assert dying.poll_once().repos[API].outcome is PollOutcome.ANNOUNCED
    owed = world.store.get_head(API)
    assert owed is not None and owed.owed_by == first, "handed to Slack, not posted yet"
    # The next leader polls while the first still beats: the post is the first's to make.
    nxt = Poller(world.settings, world.github, world.store, world.service, heard)
    nxt.act_as(second)
    nxt.poll_once()
    assert heard.news == []
    assert dying.poll_once().repos[API].outcome is PollOutcome.UNCHANGED and len(queued.news) == 1
    # The first dies with the post queued: once its heartbeat is older than the lease, it is posted.
    clock.now += timedelta(seconds=world.settings.state.lease + 1)
    world.store.heartbeat(second)
    nxt.poll_once()
    assert [(n.sha, n.merger) for n in heard.news] == [(sha, "bob")]
    head = world.store.get_head(API)
    assert head is not None and head == BranchHead(API, sha, head.etag)
    nxt.poll_once()
    assert len(heard.news) == 1
