"""What SqlStore's row mixins call on SqlStore (typed here, bodies there) and the deploy writes they share."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Connection, Insert, Select, Table, select, update
from sqlalchemy.exc import OperationalError

from bot.errors import StoreError
from bot.models import Deploy, DeployRequest, DeployState
from bot.store.rows import ACTIVE, deploy_of, utc_now
from bot.store.schema import deploys

CLAIM_CANDIDATES = 20  # deploys one claim looks at before it reads again
MAX_CREATE_ATTEMPTS = 5  # rounds of queueing a deploy after a lost race with another process


def same_active(request: DeployRequest) -> Select[Any]:
    """The queued or running deploy of the same repo + env + SHA, which a new request becomes."""
    return select(deploys).where(
        deploys.c.repo == request.repo,
        deploys.c.env == request.env,
        deploys.c.sha == request.sha,
        deploys.c.state.in_(ACTIVE),
    )


@contextmanager
def unavailable_as_store_error() -> Iterator[None]:
    """A database that is locked past the busy timeout, full or gone is a StoreError."""
    try:
        yield
    except OperationalError as exc:
        reason = (
            str(exc.orig or exc).strip().splitlines()[0] if str(exc.orig or exc).strip() else "unavailable"
        )
        raise StoreError(f"the database is unavailable: {reason}") from exc


class StoreRows:
    """The base of every SqlStore mixin: SqlStore's plumbing, typed, and conditional deploy writes."""

    if TYPE_CHECKING:

        def _read(self) -> AbstractContextManager[Connection]: ...

        def _write(self) -> AbstractContextManager[Connection]: ...

        def _upsert(
            self,
            table: Table,
            keys: Sequence[str],
            values: dict[str, object],
            *,
            keep_existing: bool = False,
        ) -> Insert: ...

        def _serialize(self, conn: Connection, repo: str, env: str) -> None: ...

        def _wake(self, conn: Connection) -> None: ...

        @property
        def _database_clock(self) -> bool: ...

    def _move_deploy(
        self, deploy_id: int, *where: ColumnElement[bool], wake: bool = False, **values: object
    ) -> Deploy | None:
        """One conditional write on a deploy: set ``values`` where ``where`` holds; None if it did not.

        ``wake``: a move that frees or fills a repo + env tells every process's feed.
        """
        with self._write() as conn:
            row = conn.execute(
                update(deploys).where(deploys.c.id == deploy_id, *where).values(**values).returning(deploys)
            ).first()
            if row is not None and wake:
                self._wake(conn)
        return None if row is None else deploy_of(row)

    def _finish_from(self, held: str, deploy_id: int, state: DeployState, error: str) -> Deploy | None:
        """A deploy in state ``held`` → the final ``state`` with ``error``; None if it was not ``held``."""
        if not state.is_final:
            raise ValueError(f"a deploy {held} can only end in a final state, not {state.value}")
        return self._move_deploy(
            deploy_id,
            deploys.c.state == held,
            wake=True,
            state=state.value,
            finished_at=utc_now(),
            error=error,
            waiting_for=None,
            recheck_at=None,
        )

    def _claim_due(
        self, state: str, due_by: datetime, only_id: int | None, values: dict[str, object], *, wake: bool
    ) -> Deploy | None:
        """The oldest deploy in ``state`` whose ``recheck_at`` is due by ``due_by``, moved to ``values``.

        One conditional write per candidate, so of every process looking exactly one moves it.
        """
        due = (deploys.c.state == state) & (deploys.c.recheck_at <= due_by)
        candidates = select(deploys.c.id).where(due).order_by(deploys.c.id).limit(CLAIM_CANDIDATES)
        if only_id is not None:
            candidates = candidates.where(deploys.c.id == only_id)
        with self._read() as conn:
            ids = list(conn.scalars(candidates))
        for deploy_id in ids:
            found = self._move_deploy(deploy_id, due, wake=wake, **values)
            if found is not None:
                return found
        return None
