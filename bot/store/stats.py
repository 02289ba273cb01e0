"""SqlStore's DORA reads: finished deploys summed per day, first-shipped commits, incidents.

The sums, the "first shipped" test and the incident runs (window functions) are SQL; medians and
percentiles are left to bot/dora.py in Python, since SQLite has no percentile aggregate.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    and_,
    case,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from bot.models import DeployState, DoraDay, DoraHistory, Incident, LeadSample
from bot.store.plumbing import StoreRows
from bot.store.schema import deploy_commits, deploys

DAY_SECONDS = 86400.0
ROLLBACK_WITHIN_SECONDS = 86400.0
"""A succeeded deploy counts as failed when a rollback of it was requested this soon after it ended."""

_SUCCEEDED = DeployState.SUCCEEDED.value
_FAILED = DeployState.FAILED.value
_T = TypeVar("_T")


class _Epoch(FunctionElement[float]):
    """A timestamp column as seconds since 1970-01-01 UTC, in either dialect."""

    type = Float()
    name = "robot_epoch"
    inherit_cache = True


@compiles(_Epoch, "sqlite")
def _epoch_sqlite(element: _Epoch, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite keeps naive UTC text; julianday 2440587.5 is 1970-01-01 00:00 (millisecond precision).
    return f"((julianday({compiler.process(element.clauses, **kw)}) - 2440587.5) * 86400.0)"


@compiles(_Epoch, "postgresql")
def _epoch_postgresql(element: _Epoch, compiler: SQLCompiler, **kw: Any) -> str:
    # EXTRACT gives numeric (a Decimal in Python) since PostgreSQL 14: a float is what we add up.
    return f"CAST(EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)}) AS DOUBLE PRECISION)"


class _WholeDays(FunctionElement[int]):
    """Whole days in a non-negative number of seconds."""

    type = Integer()
    name = "robot_whole_days"
    inherit_cache = True


@compiles(_WholeDays, "sqlite")
def _whole_days_sqlite(element: _WholeDays, compiler: SQLCompiler, **kw: Any) -> str:
    # CAST truncates toward zero: the floor, for the non-negative values this takes.
    return f"CAST(({compiler.process(element.clauses, **kw)}) / 86400.0 AS INTEGER)"


@compiles(_WholeDays, "postgresql")
def _whole_days_postgresql(element: _WholeDays, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(FLOOR(({compiler.process(element.clauses, **kw)}) / 86400.0) AS INTEGER)"


class DoraRows(StoreRows):
    """SqlStore's DORA reads (mixed into it): one read, three queries."""

    _engine: Engine

    def dora_history(self, targets: Sequence[tuple[str, str]], until: datetime, days: int) -> DoraHistory:
        """The deploys of ``targets`` (repo, env) that finished in the ``days`` days before ``until``,
        summed up per day, with the lead time of each commit they shipped first and the incidents."""
        if not targets or days <= 0:
            return DoraHistory()
        since = until - timedelta(days=days)
        end = until.timestamp()
        d = deploys.alias("d")
        rollback = deploys.alias("r")
        pairs = sorted(set(targets))
        repos, envs = sorted({repo for repo, _ in pairs}), sorted({env for _, env in pairs})
        # The IN lists lead the planner to ix_deploys_dora (repo, env, state, finished_at); the
        # pairs then keep only the environments asked for, unless the IN lists already do (every
        # repo's same environments: the usual case, and one condition less per row and query).
        in_targets = and_(d.c.repo.in_(repos), d.c.env.in_(envs))
        if len(pairs) < len(repos) * len(envs):
            in_targets = and_(
                in_targets, or_(*(and_(d.c.repo == repo, d.c.env == env) for repo, env in pairs))
            )
        in_window = and_(in_targets, d.c.finished_at >= since, d.c.finished_at < until)
        ended = _Epoch(d.c.finished_at)
        rolled_back = exists().where(
            rollback.c.rollback_of == d.c.id,
            _Epoch(rollback.c.created_at) - ended <= ROLLBACK_WITHIN_SECONDS,
        )
        finished = (
            select(
                d.c.id,
                d.c.repo,
                d.c.env,
                d.c.state,
                ended.label("t"),
                _WholeDays(literal(end, Float) - ended).label("day"),
                case((and_(d.c.state == _SUCCEEDED, rolled_back), 1), else_=0).label("rb"),
            )
            .where(in_window, d.c.state.in_([_SUCCEEDED, _FAILED]))
            .cte("finished")
            # Worked out once per row: PostgreSQL would otherwise inline it and look for the
            # rollback again wherever `rb` is used.
            .prefix_with("MATERIALIZED", dialect="postgresql")
        )
        sums, incidents, first = _per_day(finished), _incidents(finished), _first_shipped(d, in_window)
        if self._engine.dialect.name == "postgresql":
            # Each statement reads its own snapshot there anyway (READ COMMITTED), so the longest
            # one, the commits', runs on a second connection while the other two run and are read.
            background = _Background(lambda: self._dora_rows(first)[0])
            try:
                day_rows, incident_rows = self._dora_rows(sums, incidents)
            finally:
                background.wait()
            shipped_rows = background.result()
        else:
            day_rows, incident_rows, shipped_rows = self._dora_rows(sums, incidents, first)
        # Plain tuples, sorted as they come: the one order every store gives (repo, env, day
        # from the newest, value), at the least cost per row for the tens of thousands of commits.
        leads = sorted(
            (repo, env, int((end - shipped) // DAY_SECONDS), shipped - committed)
            for repo, env, committed, shipped in shipped_rows
        )
        return DoraHistory(
            days=tuple(
                sorted(
                    (
                        DoraDay(r.repo, r.env, int(r.day), int(r.ok), int(r.failed), int(r.rb))
                        for r in day_rows
                    ),
                    key=lambda x: (x.repo, x.env, x.day),
                )
            ),
            leads=tuple(LeadSample(*lead) for lead in leads),
            incidents=tuple(
                sorted(
                    (Incident(r.repo, r.env, int(r.day), r.took) for r in incident_rows), key=_incident_order
                )
            ),
        )

    def _dora_rows(self, *statements: Any) -> list[Sequence[Any]]:
        """Every row of each of ``statements``, read in one transaction."""
        with self._read() as conn:
            if conn.dialect.name == "postgresql":
                # Past about 150 days the planner's estimates cross jit_above_cost and compiling
                # the queries took longer (30-45 ms each) than running them.
                conn.exec_driver_sql("SET LOCAL jit = off")
            # Fetched whole: row by row, the fetching cost more than the query.
            return [conn.execute(statement).all() for statement in statements]


class _Background(Generic[_T]):
    """``work`` run on a thread of its own: wait() for it, then result() returns or raises what it did."""

    def __init__(self, work: Callable[[], _T]) -> None:
        self._work = work
        self._outcome: list[_T] = []
        self._error: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name="dora-read", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._outcome.append(self._work())
        except BaseException as exc:  # handed to the caller by result()
            self._error.append(exc)

    def wait(self) -> None:
        self._thread.join()

    def result(self) -> _T:
        self.wait()
        if self._error:
            raise self._error[0]
        return self._outcome[0]


def _incident_order(incident: Incident) -> tuple[str, str, int, bool, float]:
    """Incidents by repo, env, day from the newest, then recovery time (the open ones last)."""
    return (incident.repo, incident.env, incident.day, incident.seconds is None, incident.seconds or 0.0)


def _per_day(finished: Any) -> Any:
    """Succeeded, failed and rolled-back deploys per repo, env and day."""
    f = finished.c
    return select(
        f.repo,
        f.env,
        f.day,
        func.sum(case((f.state == _SUCCEEDED, 1), else_=0)).label("ok"),
        func.sum(case((f.state == _FAILED, 1), else_=0)).label("failed"),
        func.sum(f.rb).label("rb"),
    ).group_by(f.repo, f.env, f.day)


def _incidents(finished: Any) -> Any:
    """The first bad deploy of each run of bad ones, and how long until the next good one ended."""
    f = finished.c
    flagged = select(
        f.repo, f.env, f.day, f.t, f.id, case((or_(f.state == _FAILED, f.rb == 1), 1), else_=0).label("bad")
    ).subquery("flagged")
    g = flagged.c
    env = [g.repo, g.env]
    # Both windows walk each environment from the newest deploy back, so one sort serves them:
    # the deploy before this one is the next row in that order (lead). The next good deploy's
    # end is a running minimum over the rows already walked: a frame that starts at the
    # partition's start grows row by row, where "every row after this one" would be aggregated
    # again for each row (quadratic in PostgreSQL).
    newest_first = [g.t.desc(), g.id.desc()]
    marked = select(
        g.repo,
        g.env,
        g.day,
        g.t,
        g.bad,
        func.lead(g.bad, literal_column("1"), literal_column("0"))
        .over(partition_by=env, order_by=newest_first)
        .label("before"),
        func.min(case((g.bad == 0, g.t)))
        .over(partition_by=env, order_by=newest_first, rows=(None, -1))
        .label("good"),
    ).subquery("marked")
    m = marked.c
    return select(m.repo, m.env, m.day, (m.good - m.t).label("took")).where(m.bad == 1, m.before == 0)


def _first_shipped(d: Any, in_window: ColumnElement[bool]) -> Any:
    """Each commit a succeeded deploy of the window shipped first in its environment (no
    succeeded deploy there shipped it before: an earlier end, or the same end and a lower id)."""
    c = deploy_commits.alias("c")
    c2 = deploy_commits.alias("c2")
    d2 = deploys.alias("d2")
    earlier = or_(
        d2.c.finished_at < d.c.finished_at, and_(d2.c.finished_at == d.c.finished_at, d2.c.id < d.c.id)
    )
    # Nested, so the only way in is by SHA (its index), then each deploy by its key: a planner
    # without statistics would otherwise walk every earlier deploy of the environment instead.
    # OFFSET 0 keeps PostgreSQL from making it a hash anti-join over every commit ever shipped.
    shipped_before = (
        select(c2.c.deploy_id)
        .where(
            c2.c.sha == c.c.sha,
            # Most commits are found shipped by `d` itself: dismissed from the index alone,
            # without reading that deploy again (it is not earlier than itself anyway).
            c2.c.deploy_id != d.c.id,
            exists()
            .where(
                d2.c.id == c2.c.deploy_id,
                d2.c.repo == d.c.repo,
                d2.c.env == d.c.env,
                d2.c.state == _SUCCEEDED,
                earlier,
            )
            .correlate(d, c2),  # said explicitly: `d` is two levels up, which is not looked for
        )
        .offset(0)
        .exists()
    )
    return (
        select(d.c.repo, d.c.env, _Epoch(c.c.committed_at), _Epoch(d.c.finished_at))
        .select_from(d.join(c, c.c.deploy_id == d.c.id))
        .where(in_window, d.c.state == _SUCCEEDED, c.c.committed_at.is_not(None), ~shipped_before)
    )
