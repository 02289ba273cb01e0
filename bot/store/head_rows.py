"""SqlStore's branch heads: the last head the merge poller saw of each repo, moved by one poller at a time."""

from __future__ import annotations

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from bot.models import AutoDeploy, BranchHead, HeadClaim
from bot.store.auto_deploy_rows import PENDING_AUTO, auto_key, claim_auto_deploy
from bot.store.plumbing import StoreRows
from bot.store.rows import utc_now
from bot.store.schema import auto_deploys, heads


class HeadRows(StoreRows):
    """The branch-head half of SqlStore (mixed into it): read, record, claim a move, undo it."""

    def get_head(self, repo: str) -> BranchHead | None:
        """The last branch head the poller recorded for repo, or None."""
        with self._read() as conn:
            row = conn.execute(select(heads).where(heads.c.repo == repo)).first()
        if row is None:
            return None
        return BranchHead(repo=row.repo, sha=row.sha, etag=row.etag)

    def set_head(self, head: BranchHead) -> None:
        """Record the branch head (and its ETag) the poller saw, whatever was recorded before."""
        values: dict[str, object] = {
            "repo": head.repo,
            "sha": head.sha,
            "etag": head.etag,
            "updated_at": utc_now(),
        }
        with self._write() as conn:
            conn.execute(self._upsert(heads, ("repo",), values))

    def claim_head(
        self, previous: str | None, head: BranchHead, auto_deploy: AutoDeploy | None = None
    ) -> HeadClaim:
        """Move the recorded head from ``previous`` (None: none yet) to ``head``: one conditional write.

        Of several pollers seeing the same move, exactly one wins; only the winner announces.
        ``auto_deploy`` (pending) is claimed in the same transaction, unless that repo + env + SHA
        was claimed before; older pending auto-deploys of the repo + env expire (a newer merge).
        """
        values: dict[str, object] = {"sha": head.sha, "etag": head.etag, "updated_at": utc_now()}
        try:
            with self._write() as conn:
                if previous is None:
                    conn.execute(insert(heads).values(repo=head.repo, **values))
                else:
                    moved = conn.execute(
                        update(heads)
                        .where(heads.c.repo == head.repo, heads.c.sha == previous)
                        .values(**values)
                        .returning(heads.c.repo)
                    ).first()
                    if moved is None:
                        return HeadClaim(False)
                if auto_deploy is None or previous == head.sha:
                    return HeadClaim(True)
                return HeadClaim(True, claim_auto_deploy(conn, auto_deploy))
        except IntegrityError:
            # First sightings by two pollers: the primary key let one in.
            return HeadClaim(False)

    def release_head(self, claimed: BranchHead, previous: BranchHead, auto_deploy: AutoDeploy | None) -> bool:
        """Undo a claim whose announcement failed: the head (and ETag) back to ``previous``.

        ``auto_deploy``, the one the claim made, goes with it while still pending. False if the
        head moved on since (another poller's claim stands).
        """
        with self._write() as conn:
            back = conn.execute(
                update(heads)
                .where(heads.c.repo == claimed.repo, heads.c.sha == claimed.sha)
                .values(sha=previous.sha, etag=previous.etag, updated_at=utc_now())
                .returning(heads.c.repo)
            ).first()
            if back is not None and auto_deploy is not None:
                conn.execute(delete(auto_deploys).where(auto_key(auto_deploy), PENDING_AUTO))
        return back is not None
