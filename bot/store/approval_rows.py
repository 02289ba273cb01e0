"""SqlStore's approvals: who approved a deploy awaiting approval, and its way out of waiting."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, select, update

from bot.errors import UnknownDeploy
from bot.models import Approval, ApprovalResult, Deploy, DeployState
from bot.store.plumbing import StoreRows
from bot.store.rows import AWAITING, QUEUED, approval_of, deploy_of, utc_now
from bot.store.schema import approvals, deploys


class ApprovalRows(StoreRows):
    """The approvals half of SqlStore (mixed into it): approve, reject or cancel, expire, list."""

    def approve(self, deploy_id: int, approver: str, required: int) -> ApprovalResult:
        """Record ``approver``'s approval once; the ``required``-th moves the deploy
        awaiting_approval → queued in the same transaction.

        The deploy's row is locked first (PostgreSQL: FOR UPDATE; SQLite: the write lock), so
        two processes approving at once count each other's approval and queue it once.
        """
        with self._write() as conn:
            row = conn.execute(select(deploys).where(deploys.c.id == deploy_id).with_for_update()).first()
            if row is None:
                raise UnknownDeploy(f"There is no deploy #{deploy_id}.")
            if row.state != AWAITING:
                return ApprovalResult(deploy_of(row), self._approvals_of(conn, deploy_id), False, False)
            values = {"deploy_id": deploy_id, "approver": approver, "approved_at": utc_now()}
            insert_once = self._upsert(approvals, ("deploy_id", "approver"), values, keep_existing=True)
            recorded = conn.execute(insert_once.returning(approvals.c.id)).first() is not None
            given = self._approvals_of(conn, deploy_id)
            queued = None
            if len(given) >= required:
                queued = conn.execute(
                    update(deploys)
                    .where(deploys.c.id == deploy_id, deploys.c.state == AWAITING)
                    .values(state=QUEUED, recheck_at=None, waiting_for=None)
                    .returning(deploys)
                ).first()
                if queued is not None:
                    self._wake(conn)
        return ApprovalResult(deploy_of(queued or row), given, recorded, queued is not None)

    def finish_approval(self, deploy_id: int, state: DeployState, error: str) -> Deploy | None:
        """Awaiting approval → a final state (rejected, cancelled); None if it was not awaiting."""
        return self._finish_from(AWAITING, deploy_id, state, error)

    def expire_approval(self, error: str, only_id: int | None = None) -> Deploy | None:
        """The oldest deploy whose approval time ran out, now expired (one conditional write, so
        of every process looking exactly one expires it); None when none is due."""
        now = utc_now()
        expired = {"state": DeployState.EXPIRED.value, "finished_at": now, "error": error, "recheck_at": None}
        return self._claim_due(AWAITING, now, only_id, expired, wake=True)

    def list_approvals(self, deploy_ids: Sequence[int]) -> dict[int, tuple[Approval, ...]]:
        """The approvals of each deploy asked about, oldest first (a deploy with none is absent)."""
        if not deploy_ids:
            return {}
        query = select(approvals).where(approvals.c.deploy_id.in_(list(deploy_ids))).order_by(approvals.c.id)
        found: dict[int, list[Approval]] = {}
        with self._read() as conn:
            for row in conn.execute(query):
                found.setdefault(row.deploy_id, []).append(approval_of(row))
        return {deploy_id: tuple(given) for deploy_id, given in found.items()}

    def _approvals_of(self, conn: Connection, deploy_id: int) -> tuple[Approval, ...]:
        query = select(approvals).where(approvals.c.deploy_id == deploy_id).order_by(approvals.c.id)
        return tuple(approval_of(row) for row in conn.execute(query))
