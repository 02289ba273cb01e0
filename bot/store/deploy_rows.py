"""SqlStore's deploys: queue one, claim the next, update, finish or cancel it, list them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, String, case, exists, insert, literal, null, select, update
from sqlalchemy.exc import IntegrityError

from bot.errors import UnknownDeploy
from bot.models import Deploy, DeployRequest, DeployState, Source
from bot.store.lock_rows import unexpired
from bot.store.plumbing import CLAIM_CANDIDATES, MAX_CREATE_ATTEMPTS, StoreRows, same_active
from bot.store.process_rows import owner_alive
from bot.store.rows import ACTIVE, HOLDING, QUEUED, RUNNING, deploy_of, new_deploy, utc_now
from bot.store.schema import deploys, locks

UPDATABLE_FIELDS = frozenset({"github_deployment_id", "channel", "message_ts", "error"})
MAX_CLAIM_ROUNDS = 3  # rounds of claiming after another process claimed every candidate first


class DeployRows(StoreRows):
    """The deploy half of SqlStore (mixed into it): the queue's writes, each one transaction."""

    def create_deploy(self, request: DeployRequest, owner: int | None = None) -> tuple[Deploy, bool]:
        """Queue a deploy; if the same repo+env+sha is queued or running, return it and False.

        ``owner``: the process that will run it (a terminal's deploy), recorded while it is queued.
        """
        values = {**new_deploy(request), "owner_id": owner}
        for _ in range(MAX_CREATE_ATTEMPTS):
            try:
                with self._write() as conn:
                    self._serialize(conn, request.repo, request.env)
                    existing = conn.execute(same_active(request)).first()
                    if existing is not None:
                        return deploy_of(existing), False
                    row = conn.execute(insert(deploys).values(values).returning(deploys)).one()
                    self._wake(conn)
                    return deploy_of(row), True
            except IntegrityError:
                # Another process inserted the same request between our read and our insert
                # (PostgreSQL); its row is committed now, the next round returns it.
                continue
        raise RuntimeError(f"could not queue {request.repo}@{request.sha} → {request.env}")

    def get_deploy(self, deploy_id: int) -> Deploy | None:
        """The deploy with that id, or None."""
        with self._read() as conn:
            row = conn.execute(select(deploys).where(deploys.c.id == deploy_id)).first()
        return None if row is None else deploy_of(row)

    def claim_next(
        self, only_id: int | None = None, owner: int | None = None, lease: float | None = None
    ) -> Deploy | None:
        """Atomically move the oldest claimable queued deploy to running (one per repo+env).

        ``owner`` (the claiming process) is recorded in the same write. With ``lease``, a deploy
        queued for another process (a terminal's) is that process's while its lease holds: the
        terminal shows its steps and its Ctrl-C cancels them; if it dies, anyone may run it.
        """
        claimable = _claimable(unexpired(self._database_clock))
        if lease is not None:
            mine = deploys.c.owner_id.is_(None) if owner is None else deploys.c.owner_id == owner
            claimable = claimable & (
                deploys.c.owner_id.is_(None) | mine | ~owner_alive(lease, self._database_clock)
            )
        candidates = select(deploys.c.id, deploys.c.repo, deploys.c.env).where(claimable)
        candidates = candidates.order_by(deploys.c.id)
        if only_id is not None:
            candidates = candidates.where(deploys.c.id == only_id)
        candidates = candidates.limit(CLAIM_CANDIDATES)
        for _ in range(MAX_CLAIM_ROUNDS):
            with self._read() as conn:
                found = [(r.id, r.repo, r.env) for r in conn.execute(candidates)]
            if not found:
                return None
            for deploy_id, repo, env in found:
                claim = (
                    update(deploys)
                    .where(deploys.c.id == deploy_id, claimable)
                    .values(state=RUNNING, started_at=utc_now(), owner_id=owner, step_pgid=None)
                    .returning(deploys)
                )
                try:
                    with self._write() as conn:
                        self._serialize(conn, repo, env)
                        row = conn.execute(claim).first()
                except IntegrityError:
                    # Another process claimed this repo+env first; the unique index said no.
                    continue
                if row is not None:
                    return deploy_of(row)
        return None

    def update_deploy(self, deploy_id: int, **fields: object) -> Deploy:
        """Set github_deployment_id, channel, message_ts or error."""
        unknown = sorted(set(fields) - UPDATABLE_FIELDS)
        if unknown:
            raise ValueError(f"update_deploy cannot set {', '.join(unknown)}")
        for name, value in fields.items():
            wanted: type = int if name == "github_deployment_id" else str
            if value is not None and (not isinstance(value, wanted) or isinstance(value, bool)):
                raise ValueError(f"update_deploy: {name} must be {wanted.__name__} or None")
        if not fields:
            found = self.get_deploy(deploy_id)
            if found is None:
                raise UnknownDeploy(f"There is no deploy #{deploy_id}.")
            return found
        values: dict[str, object] = dict(fields)
        if "message_ts" in fields:
            # Any deploy but a merge one is its own thread: the message is its root.
            values["root_ts"] = case(
                (deploys.c.source != Source.MERGE.value, literal(fields["message_ts"], String(64))),
                else_=deploys.c.root_ts,
            )
            values["root_claimed_at"] = case(
                (deploys.c.source != Source.MERGE.value, null()), else_=deploys.c.root_claimed_at
            )
        with self._write() as conn:
            row = conn.execute(
                update(deploys).where(deploys.c.id == deploy_id).values(**values).returning(deploys)
            ).first()
        if row is None:
            raise UnknownDeploy(f"There is no deploy #{deploy_id}.")
        return deploy_of(row)

    def finish_deploy(self, deploy_id: int, state: DeployState, error: str | None) -> Deploy:
        """Move a queued or running deploy to a final state; a final one is returned unchanged.

        ``error=None`` keeps any error already recorded.
        """
        if not state.is_final:
            raise ValueError(f"finish_deploy needs a final state, not {state.value}")
        values: dict[str, object] = {
            "state": state.value,
            "finished_at": utc_now(),
            "waiting_for": None,
            "recheck_at": None,
        }
        if error is not None:
            values["error"] = error
        with self._write() as conn:
            row = conn.execute(
                update(deploys)
                .where(deploys.c.id == deploy_id, deploys.c.state.in_(ACTIVE))
                .values(**values)
                .returning(deploys)
            ).first()
            if row is None:
                row = conn.execute(select(deploys).where(deploys.c.id == deploy_id)).first()
            else:
                self._wake(conn)
        if row is None:
            raise UnknownDeploy(f"There is no deploy #{deploy_id}.")
        return deploy_of(row)

    def cancel_queued(self, deploy_id: int) -> Deploy | None:
        """Queued → cancelled in one conditional write; None if it was not queued."""
        return self._move_deploy(
            deploy_id,
            deploys.c.state == QUEUED,
            wake=True,
            state=DeployState.CANCELLED.value,
            finished_at=utc_now(),
        )

    def request_cancel(self, deploy_id: int) -> Deploy | None:
        """Flag a running deploy for cancellation; None if it was not running."""
        return self._move_deploy(deploy_id, deploys.c.state == RUNNING, cancel_requested=True)

    def record_step(self, deploy_id: int, pgid: int | None) -> bool:
        """Record (or clear) the process group of the deploy's running step.

        False when the deploy is no longer running (another process took it over).
        """
        with self._write() as conn:
            row = conn.execute(
                update(deploys)
                .where(deploys.c.id == deploy_id, deploys.c.state == RUNNING)
                .values(step_pgid=pgid)
                .returning(deploys.c.id)
            ).first()
        return row is not None

    def list_deploys(
        self,
        repo: str | None = None,
        env: str | None = None,
        states: Sequence[DeployState] | None = None,
        limit: int = 50,
        since: datetime | None = None,
    ) -> list[Deploy]:
        """Newest first, optionally only one repo, environment, set of states, or those created since."""
        if limit <= 0:
            return []
        query = select(deploys).order_by(deploys.c.id.desc()).limit(limit)
        if repo is not None:
            query = query.where(deploys.c.repo == repo)
        if env is not None:
            query = query.where(deploys.c.env == env)
        if states is not None:
            query = query.where(deploys.c.state.in_([s.value for s in states]))
        if since is not None:
            query = query.where(deploys.c.created_at >= since)
        with self._read() as conn:
            return [deploy_of(r) for r in conn.execute(query)]

    def last_succeeded(self, repo: str, env: str) -> Deploy | None:
        """The newest succeeded deploy of repo+env (deploys of one env run in id order)."""
        found = self.list_deploys(repo, env, [DeployState.SUCCEEDED], limit=1)
        return found[0] if found else None


def _claimable(unexpired: ColumnElement[bool]) -> ColumnElement[bool]:
    """Queued, oldest queued of its repo+env, nothing running or waiting there, and not locked
    (``unexpired``: which lock rows still hold)."""
    older = deploys.alias("older")
    running = deploys.alias("running")
    return (
        (deploys.c.state == QUEUED)
        & ~exists().where(
            older.c.repo == deploys.c.repo,
            older.c.env == deploys.c.env,
            older.c.state == QUEUED,
            older.c.id < deploys.c.id,
        )
        & ~exists().where(
            running.c.repo == deploys.c.repo,
            running.c.env == deploys.c.env,
            running.c.state.in_(HOLDING),
        )
        & ~exists().where(locks.c.repo == deploys.c.repo, locks.c.env == deploys.c.env, unexpired)
    )
