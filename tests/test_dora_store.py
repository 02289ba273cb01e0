"""SqlStore.dora_history on real SQLite files and a real PostgreSQL: the seeded answers of
tests/unit/test_dora_figures.py, and MemoryStore's row-by-row sums over a random history."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from bot.dora import HOUR, Level, build_report
from bot.models import DeployState, DoraHistory
from bot.store import SqlStore
from tests.fakes.memory import MemoryStore
from tests.support.history import API, SEEDED, UNTIL, WEB, Past, insert_history, seed_memory
from tests.support.postgres import PostgresServer

TARGETS = [(API, "production"), (WEB, "production")]
LOOKBACK = 84


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def store_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'robot.db'}"
    server: PostgresServer = request.getfixturevalue("pg_server")
    return server.new_database()


@pytest.fixture
def store(store_url: str) -> Iterator[SqlStore]:
    opened = SqlStore.from_url(store_url)
    yield opened
    opened.close()


def seeded(store: SqlStore, store_url: str, history: tuple[Past, ...] | list[Past]) -> SqlStore:
    insert_history(store_url, history)
    return store


def test_the_seeded_answers(store: SqlStore, store_url: str) -> None:
    history = seeded(store, store_url, SEEDED).dora_history(TARGETS, UNTIL, LOOKBACK)
    report = build_report(history, TARGETS, UNTIL, 30)
    api, overall = report.repos[0], report.overall
    # The hand-worked answers of tests/unit/test_dora_figures.py (see the arithmetic there).
    assert api.frequency.numbers["deploys"] == 6 and api.frequency.level is Level.HIGH
    assert api.lead_time.numbers["median_seconds"] == pytest.approx(3 * HOUR, abs=1)
    assert api.lead_time.numbers["p90_seconds"] == pytest.approx(26.5 * HOUR, abs=1)
    assert api.failure_rate.value == pytest.approx(4 / 9) and api.failure_rate.level is Level.LOW
    assert api.recovery.numbers["median_seconds"] == pytest.approx(2.75 * HOUR, abs=1)
    assert (api.recovery.numbers["incidents"], api.recovery.numbers["not_recovered"]) == (3, 1)
    assert api.frequency.trend == "▁▁▁▁▁▁▅▁▁███" and api.failure_rate.trend == "      ▁  ██▆"
    assert overall.failure_rate.value == pytest.approx(5 / 12)
    assert overall.lead_time.numbers["p90_seconds"] == pytest.approx(33.6 * HOUR, abs=1)
    assert overall.recovery.numbers["median_seconds"] == pytest.approx(1.5 * HOUR, abs=1)


def test_nothing_to_read(store: SqlStore) -> None:
    assert store.dora_history(TARGETS, UNTIL, LOOKBACK) == DoraHistory()
    assert store.dora_history([], UNTIL, LOOKBACK) == DoraHistory()


def test_the_same_sums_as_memory_store_over_a_random_history(store: SqlStore, store_url: str) -> None:
    history = _random_history(random.Random(7), 400)
    seeded(store, store_url, history)
    memory = MemoryStore()
    seed_memory(memory, history)
    targets = [(API, "production"), (API, "staging"), (WEB, "production")]
    sql, mem = store.dora_history(targets, UNTIL, 60), memory.dora_history(targets, UNTIL, 60)
    assert sql.days == mem.days and len(sql.days) > 20
    assert [(x.repo, x.env, x.day) for x in sql.leads] == [(x.repo, x.env, x.day) for x in mem.leads]
    assert all(
        math.isclose(a.seconds, b.seconds, abs_tol=0.01) for a, b in zip(sql.leads, mem.leads, strict=True)
    )
    assert [(x.repo, x.env, x.day, x.seconds is None) for x in sql.incidents] == [
        (x.repo, x.env, x.day, x.seconds is None) for x in mem.incidents
    ]
    for a, b in zip(sql.incidents, mem.incidents, strict=True):
        assert a.seconds is None or b.seconds is None or math.isclose(a.seconds, b.seconds, abs_tol=0.01)


def _random_history(rng: random.Random, count: int) -> list[Past]:
    """Deploys every 10 min to 10 h over about 100 days: states, rollbacks and commits shipped again."""
    states = [DeployState.SUCCEEDED] * 6 + [
        DeployState.FAILED,
        DeployState.CANCELLED,
        DeployState.INTERRUPTED,
    ]
    history: list[Past] = []
    committed: dict[str, datetime] = {}  # a commit has one time, whichever deploys ship it
    when = UNTIL - timedelta(days=100)
    for number in range(1, count + 1):
        # Whole seconds plus a quarter: never on a day boundary, whatever the database's precision.
        when += timedelta(seconds=rng.randint(600, 36000) + 0.25)
        if when >= UNTIL:
            break
        repo, env = rng.choice([(API, "production"), (API, "staging"), (WEB, "production")])
        undo = rng.choice(history[-6:]).id if history and rng.random() < 0.1 else None
        shas = [f"{rng.randint(0, 300):040x}" for _ in range(rng.randint(0, 3))]
        for sha in shas:
            committed.setdefault(sha, when - timedelta(hours=rng.uniform(0.1, 90)))
        commits = tuple((sha, committed[sha]) for sha in shas)
        created = when - timedelta(minutes=rng.randint(1, 30))
        history.append(Past(number, rng.choice(states), when, repo, env, created, undo, commits))
    return history
