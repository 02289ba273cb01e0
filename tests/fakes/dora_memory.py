"""MemoryStore's dora_history: SqlStore's DORA sums worked out in plain Python, row by row."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from bot.models import CommitInfo, Deploy, DeployState, DoraDay, DoraHistory, Incident, LeadSample

DAY = 86400.0
ROLLBACK_WITHIN = timedelta(hours=24)


def dora_history(
    deploys: Sequence[Deploy],
    commits: Mapping[int, Sequence[CommitInfo]],
    targets: Sequence[tuple[str, str]],
    until: datetime,
    days: int,
) -> DoraHistory:
    """What SqlStore.dora_history answers over these deploys and the commits each shipped."""
    if not targets or days <= 0:
        return DoraHistory()
    since = until - timedelta(days=days)
    wanted = set(targets)
    counted = [d for d in deploys if (d.repo, d.env) in wanted and d.finished_at is not None]
    ok = [d for d in counted if d.state is DeployState.SUCCEEDED]
    finished = [
        d
        for d in counted
        if d.state in (DeployState.SUCCEEDED, DeployState.FAILED) and since <= _end(d) < until
    ]
    rolled_back = {d.id for d in finished if d.state is DeployState.SUCCEEDED and _rolled_back(d, deploys)}

    def day(when: datetime) -> int:
        return int((until - when).total_seconds() // DAY)

    sums: dict[tuple[str, str, int], list[int]] = defaultdict(lambda: [0, 0, 0])
    for d in finished:
        row = sums[(d.repo, d.env, day(_end(d)))]
        row[0 if d.state is DeployState.SUCCEEDED else 1] += 1
        row[2] += d.id in rolled_back
    days_rows = [DoraDay(*key, *row) for key, row in sums.items()]

    first: dict[tuple[str, str, str], tuple[datetime, datetime]] = {}
    for d in sorted(ok, key=lambda d: (_end(d), d.id)):
        for commit in commits.get(d.id, ()):
            if commit.committed_at is not None:
                first.setdefault((d.repo, d.env, commit.sha), (commit.committed_at, _end(d)))
    leads = [
        LeadSample(repo, env, day(shipped), (shipped - committed).total_seconds())
        for (repo, env, _sha), (committed, shipped) in first.items()
        if since <= shipped < until
    ]

    incidents: list[Incident] = []
    by_env: dict[tuple[str, str], list[Deploy]] = defaultdict(list)
    for d in finished:
        by_env[(d.repo, d.env)].append(d)
    for (repo, env), run in by_env.items():
        run.sort(key=lambda d: (_end(d), d.id))
        bad = [d.state is DeployState.FAILED or d.id in rolled_back for d in run]
        for i, d in enumerate(run):
            if bad[i] and (i == 0 or not bad[i - 1]):
                good = next((_end(later) for j, later in enumerate(run[i + 1 :], i + 1) if not bad[j]), None)
                took = (good - _end(d)).total_seconds() if good is not None else None
                incidents.append(Incident(repo, env, day(_end(d)), took))

    return DoraHistory(
        days=tuple(sorted(days_rows, key=lambda x: (x.repo, x.env, x.day))),
        leads=tuple(sorted(leads, key=lambda x: (x.repo, x.env, x.day, x.seconds))),
        incidents=tuple(
            sorted(
                incidents,
                key=lambda x: (x.repo, x.env, x.day, x.seconds is None, x.seconds or 0.0),
            )
        ),
    )


def _end(deploy: Deploy) -> datetime:
    assert deploy.finished_at is not None
    return deploy.finished_at


def _rolled_back(deploy: Deploy, deploys: Sequence[Deploy]) -> bool:
    return any(
        r.rollback_of == deploy.id
        and r.created_at is not None
        and r.created_at - _end(deploy) <= ROLLBACK_WITHIN
        for r in deploys
    )
