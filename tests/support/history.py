"""Seeded deploy histories: finished deploys with their times and commits, put into a store as-is.

SQL stores get bulk inserts (the bench seeds 100,000 deploys this way); MemoryStore gets the same
deploys through its `add_past_deploy`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

from sqlalchemy import insert

from bot.models import CommitInfo, Deploy, DeployState, Source
from bot.store.engine import make_engine
from bot.store.schema import deploy_commits, deploys
from tests.fakes.memory import MemoryStore

BATCH = 5000


@dataclass(frozen=True)
class Past:
    """One deploy of a seeded history: it ended ``finished_at`` (None: never ran), shipping ``commits``."""

    id: int
    state: DeployState
    finished_at: datetime | None
    repo: str = "acme/api"
    env: str = "production"
    created_at: datetime | None = None  # default: ten minutes before it ended
    rollback_of: int | None = None
    commits: tuple[tuple[str, datetime], ...] = ()  # (sha, committed_at), oldest first

    @property
    def created(self) -> datetime:
        if self.created_at is not None:
            return self.created_at
        assert self.finished_at is not None, "a deploy that never ran needs created_at"
        return self.finished_at - timedelta(minutes=10)

    @property
    def sha(self) -> str:
        return f"{self.id:040x}"


def as_deploy(past: Past) -> Deploy:
    return Deploy(
        id=past.id,
        repo=past.repo,
        env=past.env,
        ref="main",
        sha=past.sha,
        requested_by="slack:U1",
        source=Source.COMMAND,
        state=past.state,
        created_at=past.created,
        started_at=past.created if past.finished_at is not None else None,
        finished_at=past.finished_at,
        rollback_of=past.rollback_of,
    )


def seed_memory(store: MemoryStore, history: Iterable[Past]) -> None:
    for past in history:
        commits = [CommitInfo(sha, f"change {sha[:7]}", (), "dev", when) for sha, when in past.commits]
        store.add_past_deploy(as_deploy(past), commits)


def insert_history(url: str, history: Iterable[Past]) -> int:
    """Bulk-insert ``history`` into the (migrated) database at ``url``; how many deploys went in."""
    engine = make_engine(url)
    count = 0
    try:
        for batch in _batches(iter(history)):
            deploy_rows: list[dict[str, Any]] = []
            commit_rows: list[dict[str, Any]] = []
            for past in batch:
                deploy_rows.append(_deploy_row(past))
                commit_rows.extend(
                    {
                        "deploy_id": past.id,
                        "position": position,
                        "sha": sha,
                        "committed_at": when,
                        "author": "dev",
                        "title": f"change {sha[:7]}",
                    }
                    for position, (sha, when) in enumerate(past.commits)
                )
            with engine.begin() as conn:
                conn.execute(insert(deploys), deploy_rows)
                if commit_rows:
                    conn.execute(insert(deploy_commits), commit_rows)
            count += len(deploy_rows)
        if engine.dialect.name == "postgresql":
            with engine.begin() as conn:  # ids were given: the sequence moves past them
                conn.exec_driver_sql("SELECT setval('deploys_id_seq', (SELECT max(id) FROM deploys))")
                conn.exec_driver_sql("ANALYZE")
    finally:
        engine.dispose()
    return count


def _deploy_row(past: Past) -> dict[str, Any]:
    d = as_deploy(past)
    return {
        "id": d.id,
        "repo": d.repo,
        "env": d.env,
        "ref": d.ref,
        "sha": d.sha,
        "requested_by": d.requested_by,
        "source": d.source.value,
        "state": d.state.value,
        "force": False,
        "created_at": d.created_at,
        "started_at": d.started_at,
        "finished_at": d.finished_at,
        "cancel_requested": False,
        "rollback_of": d.rollback_of,
    }


def _batches(history: Iterator[Past]) -> Iterator[list[Past]]:
    while batch := list(islice(history, BATCH)):
        yield batch


# --- the seeded history with hand-computed DORA figures (tests/unit/test_dora_figures.py and
# tests/test_dora_store.py check the same answers on MemoryStore, SQLite and PostgreSQL) ---------

UNTIL = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
API, WEB = "acme/api", "acme/web"


def ago(days: float = 0, hours: float = 0) -> datetime:
    """A time before UNTIL (never on a whole-day boundary in SEEDED: day buckets are floors)."""
    return UNTIL - timedelta(days=days, hours=hours)


def _sha(name: str) -> str:
    return name.encode().hex().ljust(40, "0")[:40]


def _ships(*commits: tuple[str, datetime]) -> tuple[tuple[str, datetime], ...]:
    return tuple((_sha(name), when) for name, when in commits)


S, F = DeployState.SUCCEEDED, DeployState.FAILED
SEEDED: tuple[Past, ...] = (
    # Before the 84 days read: shipped c1 long ago.
    Past(1, S, ago(100), commits=_ships(("c1", ago(101)))),
    # 40 days ago: only in the 12-week trends; it ships g first (3 h).
    Past(2, S, ago(40, 2), commits=_ships(("g", ago(40, 5)))),
    # The 30-day window of acme/api production:
    Past(3, S, ago(20, 2), commits=_ships(("a", ago(20, 4)), ("b", ago(20, 6)))),  # leads 2 h, 4 h
    Past(4, F, ago(15, 2), commits=_ships(("c", ago(15, 3)))),  # incident starts
    Past(5, F, ago(15, 1), commits=_ships(("c", ago(15, 3)))),  # same incident
    Past(
        6, S, ago(14, 22), commits=_ships(("c", ago(15, 3)), ("d", ago(14, 23)))
    ),  # 5 h, 1 h; recovered in 4 h
    Past(7, S, ago(10, 2), commits=_ships(("e", ago(12, 2)), ("c1", ago(101)))),  # e 48 h; c1 shipped before
    Past(8, S, ago(10, 0.5), created_at=ago(10, 1), rollback_of=7),  # rolled #7 back 1 h after: 1.5 h
    Past(
        9, S, ago(5, 2), commits=_ships(("e", ago(12, 2)), ("f", ago(5, 2.5)), ("g", ago(40, 5)))
    ),  # f 0.5 h
    Past(10, S, ago(3, 2)),
    Past(
        11, DeployState.CANCELLED, ago(2, 0.9), created_at=ago(2, 1), rollback_of=10
    ),  # 25 h later: no failure
    Past(12, DeployState.BLOCKED, ago(1, 2)),
    Past(13, DeployState.INTERRUPTED, ago(1, 1)),
    Past(14, F, ago(0, 6)),  # not recovered yet
    # acme/api staging: never counted (production is).
    Past(15, S, ago(2, 2), env="staging", commits=_ships(("s", ago(2, 3)))),
    Past(16, F, ago(2, 1), env="staging"),
    # acme/web production:
    Past(17, S, ago(2, 2), repo=WEB, commits=_ships(("h", ago(3, 2)))),  # lead 24 h
    Past(18, F, ago(1, 2), repo=WEB),
    Past(19, S, ago(1, 1), repo=WEB),  # recovered in 1 h
)


def shifted(history: Iterable[Past], until: datetime) -> list[Past]:
    """``history`` moved in time so that it ends relative to ``until`` as SEEDED does to UNTIL
    (for a robot process, whose clock is the real one)."""
    by = until - UNTIL

    def move(when: datetime | None) -> datetime | None:
        return when + by if when is not None else None

    return [
        replace(
            past,
            finished_at=move(past.finished_at),
            created_at=move(past.created_at),
            commits=tuple((sha, when + by) for sha, when in past.commits),
        )
        for past in history
    ]
