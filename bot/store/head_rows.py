"""SqlStore's branch heads: the last head the merge poller saw of each repo, moved by one poller at a time."""

from __future__ import annotations

from sqlalchemy import delete, exists, insert, select, update
from sqlalchemy.exc import IntegrityError

from bot.models import AutoDeploy, BranchHead, HeadClaim
from bot.store.auto_deploy_rows import PENDING_AUTO, auto_key, claim_auto_deploy
from bot.store.plumbing import StoreRows
from bot.store.process_rows import heartbeat_cutoff
from bot.store.rows import utc_now
from bot.store.schema import auto_deploys, heads, processes


class HeadRows(StoreRows):
    """The branch-head half of SqlStore (mixed into it): read, record, claim a move, undo it."""

    def get_head(self, repo: str) -> BranchHead | None:
        """The last branch head the poller recorded for repo, or None."""
        with self._read() as conn:
            row = conn.execute(select(heads).where(heads.c.repo == repo)).first()
        if row is None:
            return None
        return BranchHead(row.repo, row.sha, row.etag, row.owed_from, row.owed_by)

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
        self,
        previous: str | None,
        head: BranchHead,
        auto_deploy: AutoDeploy | None = None,
        *,
        owed: bool = False,
        by: int | None = None,
    ) -> HeadClaim:
        """Move the recorded head from ``previous`` (None: none yet) to ``head``: one conditional write.

        Of several pollers seeing the same move, exactly one wins; only the winner announces.
        ``auto_deploy`` (pending) is claimed in the same transaction, unless that repo + env + SHA
        was claimed before; older pending auto-deploys of the repo + env expire (a newer merge).
        ``owed``: the move's announcement is owed from now on, posted by process ``by``, until
        ``announcement_posted`` (a move to the same SHA, a new ETag, leaves what is owed alone).
        """
        values: dict[str, object] = {"sha": head.sha, "etag": head.etag, "updated_at": utc_now()}
        if previous != head.sha:
            values |= {"owed_from": previous if owed else None, "owed_by": by if owed else None}
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
                .values(
                    sha=previous.sha, etag=previous.etag, updated_at=utc_now(), owed_from=None, owed_by=None
                )
                .returning(heads.c.repo)
            ).first()
            if back is not None and auto_deploy is not None:
                conn.execute(delete(auto_deploys).where(auto_key(auto_deploy), PENDING_AUTO))
        return back is not None

    def announcement_posted(self, repo: str, sha: str) -> bool:
        """Slack took the announcement of the move to ``sha``: nothing is owed for it any more
        (False if nothing was: the head moved on, or it was recorded already)."""
        with self._write() as conn:
            done = conn.execute(
                update(heads)
                .where(heads.c.repo == repo, heads.c.sha == sha, heads.c.owed_from.is_not(None))
                .values(owed_from=None, owed_by=None)
                .returning(heads.c.repo)
            ).first()
        return done is not None

    def reclaim_announcement(self, repo: str, sha: str, by: int | None, lease: float) -> str | None:
        """Take over the owed announcement of the move to ``sha`` for process ``by``: one
        conditional write, won only while its poster is ``by`` itself, nobody, or a process whose
        heartbeat is older than ``lease`` s. The SHA the move came from, or None when not won.

        A stopping process beats no more but may still be flushing Slack: only its heartbeat
        counts, so its announcement is its own for ``lease`` s after its last beat.
        """
        alive = exists().where(
            processes.c.id == heads.c.owed_by,
            processes.c.heartbeat_at >= heartbeat_cutoff(lease, self._database_clock),
        )
        poster = heads.c.owed_by.is_(None) | ~alive
        if by is not None:
            poster = poster | (heads.c.owed_by == by)
        with self._write() as conn:
            row = conn.execute(
                update(heads)
                .where(heads.c.repo == repo, heads.c.sha == sha, heads.c.owed_from.is_not(None), poster)
                .values(owed_by=by)
                .returning(heads.c.owed_from)
            ).first()
        return None if row is None else str(row.owed_from)
