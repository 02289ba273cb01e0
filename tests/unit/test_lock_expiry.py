"""Locks that expire, on in-memory ports: the duration grammar, the remaining-time text, the
expiry notice, and the watcher that releases expired locks once and asks the store little."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from bot.errors import EnvironmentLocked, InvalidDuration, StoreError
from bot.lock_expiry import RESCAN_SECONDS, RETRY_SECONDS, LockExpiry
from bot.models import Lock
from bot.slack.announcer import lock_expired_text
from bot.slack.chatops import Caller, ChatOps
from bot.slack.commands import parse_deploy, parse_status
from bot.text import fmt_remaining
from bot.validation import parse_lock_duration
from tests.fakes.memory import MemoryStore
from tests.unit.conftest import API, WorldFactory

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ALICE = Caller("U0ALICE01", "C0HERE")


class Clock:
    """The one time the store and the watcher read; tests move it on."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class CountingStore(MemoryStore):
    """MemoryStore counting the watcher's reads and writes; ``down`` makes them fail."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.releases = 0
        self.expiry_reads = 0
        self.down = False

    def release_expired_locks(self) -> list[Lock]:
        self.releases += 1
        if self.down:
            raise StoreError("the database is unavailable: gone")
        return super().release_expired_locks()

    def next_lock_expiry(self) -> datetime | None:
        self.expiry_reads += 1
        return super().next_lock_expiry()


class Channel:
    """A LockNotifier that keeps what it was told."""

    def __init__(self) -> None:
        self.told: list[str] = []

    def lock_expired(self, lock: Lock) -> None:
        self.told.append(lock_expired_text(lock))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> CountingStore:
    return CountingStore(clock)


# ---- the duration grammar and the texts --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("5s", timedelta(seconds=5)),
        ("30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("2H", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(minutes=90)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("30d", timedelta(days=30)),
        ("720h", timedelta(days=30)),
    ],
)
def test_lock_durations_that_parse(text: str, expected: timedelta) -> None:
    assert parse_lock_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("soon", "`soon` is not a lock duration; use a number of days, hours, minutes or seconds"),
        ("", "`` is not a lock duration"),
        ("2 h", "`2 h` is not a lock duration"),
        ("1w", "`1w` is not a lock duration"),
        ("2h1d", "`2h1d` is not a lock duration"),
        ("0s", "`0s` is no time at all"),
        ("30d1s", "`30d1s` is longer than 30 days, the longest lock that expires; lock without `for`"),
        ("9999999d", "`9999999d` is not a lock duration"),
    ],
)
def test_lock_durations_that_do_not_parse_name_the_valid_forms(text: str, message: str) -> None:
    with pytest.raises(InvalidDuration) as info:
        parse_lock_duration(text)
    assert str(info.value).startswith(message)
    if "longer" not in message:
        assert "e.g. `30m`, `2h`, `1d`, `1h30m`, `90s` (at most 30 days)" in str(info.value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (4320.0, "for 1 h 12 min more"),
        (4349.5, "for 1 h 12 min more"),
        (7200.0, "for 2 h more"),
        (90.0, "for 1 min 30 s more"),
        (0.2, "for 1 s more"),  # never "0 s" while any time is left
        (0.0, "expiring now"),
    ],
)
def test_the_remaining_time_text(seconds: float, text: str) -> None:
    assert fmt_remaining(seconds) == text


def test_a_lock_knows_how_long_it_lasts_and_what_is_left() -> None:
    lock = Lock(API, "production", "slack:U7", "freeze", T0, T0 + timedelta(hours=2))
    assert lock.duration_seconds == 7200
    assert lock.remaining_seconds(T0 + timedelta(minutes=48)) == 72 * 60
    assert lock.remaining_seconds(T0 + timedelta(hours=3)) == 0
    forever = Lock(API, "production", "slack:U7", "freeze", T0)
    assert forever.duration_seconds is None and forever.remaining_seconds(T0) is None


def test_the_expiry_notice_names_who_for_how_long_and_why_escaped() -> None:
    lock = Lock(API, "production", "slack:U0ALICE01", "release <!channel> & co", T0, T0 + timedelta(hours=2))
    assert lock_expired_text(lock) == (
        "🔓 acme/api production unlocked: <@U0ALICE01>'s lock for 2 h expired "
        "(release &lt;!channel&gt; &amp; co)"
    )
    terminal = Lock(API, "staging", "cli:root", "", T0, T0 + timedelta(seconds=90))
    assert (
        lock_expired_text(terminal)
        == "🔓 acme/api staging unlocked: root (terminal)'s lock for 1 min 30 s expired"
    )


# ---- through the service, as `/deploy` users see it ----------------------------------------


def test_lock_for_a_while_shows_what_is_left_in_where_and_status_then_expires(
    world_for: WorldFactory,
) -> None:
    shift = -timedelta(minutes=47, seconds=30)  # locked 47.5 minutes ago
    store = MemoryStore(lambda: datetime.now(UTC) + shift)
    world = world_for(store=store)
    chatops = ChatOps(world.service)
    answer = chatops.command(parse_deploy("lock acme/api for 2h : release freeze"), ALICE).text
    assert answer.startswith(
        "🔒 acme/api production is locked for 2 h: release freeze. Deploys there wait until <!date^"
    )
    assert answer.endswith("when it unlocks by itself, or until unlocked.")
    shift = timedelta()
    where = json.dumps(chatops.command(parse_deploy("where acme/api"), ALICE).blocks, ensure_ascii=False)
    assert "<@U0ALICE01>" in where and "for 1 h 12 min more · release freeze" in where
    status = json.dumps(chatops.command(parse_status(""), ALICE).blocks, ensure_ascii=False)
    assert "for 1 h 12 min more · release freeze" in status
    with pytest.raises(
        EnvironmentLocked, match=r"since .* for 1 h 12 min more: release freeze\. Unlock with"
    ):
        world.request()
    shift = timedelta(hours=1, minutes=13)  # past its end: it refuses nothing, before any release
    assert world.service.locks() == [] and world.service.where(API)[0].lock is None
    assert world.request().state.value == "queued"


def test_a_lock_without_a_duration_says_nothing_of_an_end(world_for: WorldFactory) -> None:
    world = world_for()
    chatops = ChatOps(world.service)
    answer = chatops.command(parse_deploy("lock acme/api : freeze"), ALICE).text
    assert answer == "🔒 acme/api production is locked: freeze. Deploys there wait until unlocked."
    body = json.dumps(chatops.command(parse_status(""), ALICE).blocks, ensure_ascii=False)
    assert "freeze" in body and " more" not in body
    with pytest.raises(EnvironmentLocked) as info:
        world.request()
    assert " more" not in str(info.value)


# ---- the watcher --------------------------------------------------------------------------


def test_the_watcher_asks_the_store_nothing_until_a_lock_is_due(store: CountingStore, clock: Clock) -> None:
    channel, woken = Channel(), list[Lock]()
    watcher = LockExpiry(store, channel, woken.append, clock=clock)
    assert watcher.tick() == []  # the first tick looks (locks may have expired while it was down)
    assert (store.releases, store.expiry_reads) == (1, 1)
    for _ in range(30):
        clock.advance(seconds=1)
        watcher.tick()
    assert (store.releases, store.expiry_reads) == (1, 1), "idle: no store reads between rescans"
    clock.advance(seconds=RESCAN_SECONDS)
    watcher.tick()
    assert (store.releases, store.expiry_reads) == (2, 2), "one look a rescan period, for locks set elsewhere"
    assert channel.told == [] and woken == []


def test_a_lock_set_here_is_released_when_due_and_told_once(store: CountingStore, clock: Clock) -> None:
    channel, woken = Channel(), list[Lock]()
    watcher = LockExpiry(store, channel, woken.append, clock=clock)
    watcher.tick()
    watcher.expect(store.set_lock(API, "production", "slack:U0ALICE01", "freeze", timedelta(seconds=5)))
    clock.advance(seconds=4)
    assert watcher.tick() == [] and store.releases == 1
    clock.advance(seconds=1)
    (released,) = watcher.tick()
    assert (released.env, released.reason) == ("production", "freeze")
    assert channel.told == ["🔓 acme/api production unlocked: <@U0ALICE01>'s lock for 5 s expired (freeze)"]
    assert woken == [released]
    clock.advance(seconds=2)
    assert watcher.tick() == [] and len(channel.told) == 1


def test_a_lock_set_elsewhere_is_learnt_by_the_next_rescan(store: CountingStore, clock: Clock) -> None:
    channel = Channel()
    watcher = LockExpiry(store, channel, lambda lock: None, clock=clock)
    watcher.tick()
    store.set_lock(API, "production", "slack:U7", "", timedelta(seconds=10))  # another process's
    clock.advance(seconds=30)
    assert watcher.tick() == [] and channel.told == []  # not due yet: it does not know
    clock.advance(seconds=RESCAN_SECONDS)
    assert len(watcher.tick()) == 1 and len(channel.told) == 1


def test_two_watchers_on_one_store_tell_an_expiry_once(store: CountingStore, clock: Clock) -> None:
    channels = [Channel(), Channel()]
    watchers = [LockExpiry(store, channel, lambda lock: None, clock=clock) for channel in channels]
    for watcher in watchers:
        watcher.tick()
        watcher.expect(store.set_lock(API, "production", "slack:U7", "", timedelta(seconds=3)))
    clock.advance(seconds=3)
    released = [watcher.tick() for watcher in watchers]
    assert [len(r) for r in released] == [1, 0]
    assert [len(c.told) for c in channels] == [1, 0]
    assert [e.action for e in store.lock_history(API, "production")] == ["unlocked", "locked", "locked"]


def test_a_store_that_fails_is_asked_again_later_not_every_tick(store: CountingStore, clock: Clock) -> None:
    watcher = LockExpiry(store, Channel(), lambda lock: None, clock=clock)
    store.down = True
    watcher.tick()
    watcher.tick()
    assert store.releases == 1
    clock.advance(seconds=RETRY_SECONDS)
    store.down = False
    watcher.tick()
    assert store.releases == 2
