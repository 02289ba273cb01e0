"""Seeded deploy histories: finished deploys with their times and commits, put into a store as-is.

SQL stores get bulk inserts (the bench seeds 100,000 deploys this way); MemoryStore gets the same
deploys through its `add_past_deploy`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
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
