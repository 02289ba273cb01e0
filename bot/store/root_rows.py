"""SqlStore's Slack root of a deploy: which process posts its root message, claimed and recorded once."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select, update

from bot.errors import UnknownDeploy
from bot.store.plumbing import StoreRows
from bot.store.rows import utc_now
from bot.store.schema import deploys


class RootRows(StoreRows):
    """The Slack-root half of SqlStore (mixed into it): claim posting the root, then record it."""

    def claim_root(self, deploy_id: int, stale_after: float) -> str | None:
        """Claim posting the deploy's root message: a token for ``record_root``, or None when
        it is posted or another process's claim younger than ``stale_after`` s stands."""
        now = utc_now()
        with self._write() as conn:
            row = conn.execute(
                select(deploys.c.root_ts, deploys.c.root_claimed_at).where(deploys.c.id == deploy_id)
            ).first()
            if row is None:
                raise UnknownDeploy(f"There is no deploy #{deploy_id}.")
            claimed: datetime | None = row.root_claimed_at
            if row.root_ts is not None:
                return None
            if claimed is not None:
                if (now - claimed).total_seconds() < stale_after:
                    return None
                # A takeover's token must differ from the stale one's, even within a microsecond.
                now = max(now, claimed + timedelta(microseconds=1))
            was = (
                deploys.c.root_claimed_at.is_(None)
                if claimed is None
                else deploys.c.root_claimed_at == claimed
            )
            done = conn.execute(
                update(deploys)
                .where(deploys.c.id == deploy_id, deploys.c.root_ts.is_(None), was)
                .values(root_claimed_at=now)
                .returning(deploys.c.id)
            ).first()
        return now.isoformat() if done is not None else None

    def record_root(self, deploy_id: int, token: str, channel: str, ts: str) -> bool:
        """Record the root posted under claim ``token``; False if that claim was taken over.

        A deploy without a thread yet (any but a merge deploy in its announcement's) gets the
        root as its thread.
        """
        try:
            claimed: datetime | None = datetime.fromisoformat(token)
        except ValueError:
            claimed = None
        with self._write() as conn:
            if conn.execute(select(deploys.c.id).where(deploys.c.id == deploy_id)).first() is None:
                raise UnknownDeploy(f"There is no deploy #{deploy_id}.")
            if claimed is None or claimed.tzinfo is None:
                return False
            row = conn.execute(
                update(deploys)
                .where(deploys.c.id == deploy_id, deploys.c.root_claimed_at == claimed)
                .values(
                    root_ts=ts,
                    root_claimed_at=None,
                    channel=channel,
                    message_ts=func.coalesce(deploys.c.message_ts, ts),
                )
                .returning(deploys.c.id)
            ).first()
        return row is not None
