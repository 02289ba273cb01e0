"""SqlStore's rollback choice: what a repo + env runs now and what rolling back would deploy."""

from __future__ import annotations

from sqlalchemy import select

from bot.models import DeployState, RollbackChoice
from bot.store.plumbing import StoreRows
from bot.store.rows import deploy_of
from bot.store.schema import deploys


class RollbackRows(StoreRows):
    """The rollback half of SqlStore (mixed into it): one read of the succeeded deploys."""

    def rollback_choice(self, repo: str, env: str) -> RollbackChoice:
        """What repo + env would roll back to: see RollbackChoice (three reads, one transaction)."""
        succeeded = (
            (deploys.c.repo == repo)
            & (deploys.c.env == env)
            & (deploys.c.state == DeployState.SUCCEEDED.value)
        )
        rollback = deploys.alias("rollback")
        undone_query = (
            select(deploys.c.sha)
            .distinct()
            .join(rollback, rollback.c.rollback_of == deploys.c.id)
            .where(
                rollback.c.repo == repo,
                rollback.c.env == env,
                rollback.c.state == DeployState.SUCCEEDED.value,
                deploys.c.repo == repo,
                deploys.c.env == env,
            )
        )
        newest = select(deploys).where(succeeded).order_by(deploys.c.id.desc()).limit(1)
        with self._read() as conn:
            current_row = conn.execute(newest).first()
            if current_row is None:
                return RollbackChoice(repo, env, None, None)
            current = deploy_of(current_row)
            undone = frozenset(conn.scalars(undone_query))
            skip = [current.sha, *undone]
            target_row = conn.execute(
                select(deploys)
                .where(succeeded, deploys.c.sha.not_in(skip))
                .order_by(deploys.c.id.desc())
                .limit(1)
            ).first()
        target = None if target_row is None else deploy_of(target_row)
        return RollbackChoice(repo, env, current, target, undone)
