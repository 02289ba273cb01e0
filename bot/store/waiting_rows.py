"""SqlStore's deploys waiting for CI: park a running deploy, re-check it when due, resume or end it."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select

from bot.models import Deploy, DeployState
from bot.store.plumbing import StoreRows
from bot.store.rows import RECHECKED, RUNNING, WAITING, as_utc, utc_now
from bot.store.schema import deploys


class WaitingRows(StoreRows):
    """The waiting half of SqlStore (mixed into it): each move one conditional write."""

    def park(self, deploy_id: int, owner: int | None, note: str, recheck_in: float) -> Deploy | None:
        """Running → waiting (CI pending), releasing its owner; None if it is not ``owner``'s
        running deploy any more, or a cancel was asked meanwhile.

        ``note`` says what it waits for; its gate is due again ``recheck_in`` seconds from now.
        """
        owned = deploys.c.owner_id.is_(None) if owner is None else deploys.c.owner_id == owner
        return self._move_deploy(
            deploy_id,
            deploys.c.state == RUNNING,
            owned,
            deploys.c.cancel_requested.is_(False),
            wake=True,  # other processes' timers learn of the re-check due
            state=WAITING,
            owner_id=None,
            step_pgid=None,
            waiting_for=note,
            recheck_at=utc_now() + timedelta(seconds=recheck_in),
        )

    def claim_recheck(self, recheck_in: float, only_id: int | None = None) -> Deploy | None:
        """Claim the re-check of the oldest waiting deploy that is due (one conditional write).

        Its next re-check is pushed ``recheck_in`` seconds on in the same write, so of all the
        processes looking, one checks; should it die checking, the next due time frees it again.
        """
        now = utc_now()
        pushed: dict[str, object] = {"recheck_at": now + timedelta(seconds=recheck_in)}
        return self._claim_due(WAITING, now, only_id, pushed, wake=False)

    def next_recheck(self) -> datetime | None:
        """When the soonest waiting deploy's gate, or approval timeout, is due (None: nothing waits)."""
        with self._read() as conn:
            found: datetime | None = conn.execute(
                select(func.min(deploys.c.recheck_at)).where(deploys.c.state.in_(RECHECKED))
            ).scalar()
        return as_utc(found)

    def update_waiting(self, deploy_id: int, note: str) -> Deploy | None:
        """A waiting deploy's note (what it waits for); None if it is not waiting any more."""
        return self._move_deploy(deploy_id, deploys.c.state == WAITING, waiting_for=note)

    def resume(self, deploy_id: int, owner: int | None) -> Deploy | None:
        """Waiting → running for ``owner`` (its CI went green); None if it is not waiting."""
        return self._move_deploy(
            deploy_id,
            deploys.c.state == WAITING,
            state=RUNNING,
            owner_id=owner,
            step_pgid=None,
            waiting_for=None,
            recheck_at=None,
        )

    def finish_waiting(self, deploy_id: int, state: DeployState, error: str) -> Deploy | None:
        """Waiting → a final state (blocked, cancelled); None if it was not waiting."""
        return self._finish_from(WAITING, deploy_id, state, error)
