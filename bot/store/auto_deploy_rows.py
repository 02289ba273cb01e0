"""SqlStore's merge auto-deploys: one claim per repo + env + SHA, pending until it is queued or expires."""

from __future__ import annotations

from sqlalchemy import ColumnElement, Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from bot.models import AutoDeploy, AutoDeployStatus, Deploy, DeployRequest
from bot.store.plumbing import MAX_CREATE_ATTEMPTS, StoreRows, same_active
from bot.store.rows import auto_deploy_of, deploy_of, new_deploy, utc_now
from bot.store.schema import auto_deploys, deploys

PENDING_AUTO = auto_deploys.c.status == AutoDeployStatus.PENDING.value


class AutoDeployRows(StoreRows):
    """The auto-deploy half of SqlStore (mixed into it): claim, read, note, queue or expire."""

    def mark_auto_deployed(self, repo: str, env: str, sha: str) -> bool:
        """Claim the merge auto-deploy of repo + env + SHA (pending): True only for the first caller ever."""
        claim = AutoDeploy(repo, env, sha, AutoDeployStatus.PENDING, "merge", utc_now())
        try:
            with self._write() as conn:
                return claim_auto_deploy(conn, claim) is not None
        except IntegrityError:
            return False

    def get_auto_deploy(self, repo: str, env: str, sha: str) -> AutoDeploy | None:
        """The auto-deploy claim of repo + env + SHA, or None."""
        key = AutoDeploy(repo, env, sha, AutoDeployStatus.PENDING, "", utc_now())
        with self._read() as conn:
            row = conn.execute(select(auto_deploys).where(auto_key(key))).first()
        return None if row is None else auto_deploy_of(row)

    def pending_auto_deploys(self) -> list[AutoDeploy]:
        """Every auto-deploy still waiting (for CI, or for an unlock), oldest first."""
        query = select(auto_deploys).where(PENDING_AUTO).order_by(auto_deploys.c.created_at)
        with self._read() as conn:
            return [auto_deploy_of(r) for r in conn.execute(query)]

    def update_auto_deploy(
        self,
        claim: AutoDeploy,
        *,
        thread: tuple[str, str] | None = None,
        note: str | None = None,
        expire: bool = False,
    ) -> bool:
        """Change a pending auto-deploy: its thread (channel, ts), its note, or expire it.

        One conditional write: False when it is no longer pending, or when ``note`` is what it
        says already (so each thing is said once, by one process).
        """
        values: dict[str, object] = {}
        where = [auto_key(claim), PENDING_AUTO]
        if thread is not None:
            values["channel"], values["message_ts"] = thread
        if note is not None:
            values["note"] = note
            if not expire:
                where.append(auto_deploys.c.note.is_distinct_from(note))
        if expire:
            values["status"] = AutoDeployStatus.EXPIRED.value
        if not values:
            return False
        with self._write() as conn:
            row = conn.execute(
                update(auto_deploys).where(*where).values(**values).returning(auto_deploys.c.sha)
            ).first()
        return row is not None

    def queue_auto_deploy(self, request: DeployRequest) -> tuple[Deploy, bool] | None:
        """Pending → queued, and the deploy queued, in one transaction; None if no longer pending.

        The deploy is the identical one already queued or running when there is one (False).
        """
        key = AutoDeploy(request.repo, request.env, request.sha, AutoDeployStatus.PENDING, "", utc_now())
        for _ in range(MAX_CREATE_ATTEMPTS):
            try:
                with self._write() as conn:
                    taken = conn.execute(
                        update(auto_deploys)
                        .where(auto_key(key), PENDING_AUTO)
                        .values(status=AutoDeployStatus.QUEUED.value, note=None)
                        .returning(auto_deploys.c.sha)
                    ).first()
                    if taken is None:
                        return None
                    existing = conn.execute(same_active(request)).first()
                    if existing is not None:
                        deploy, created = deploy_of(existing), False
                    else:
                        row = conn.execute(
                            insert(deploys).values(new_deploy(request)).returning(deploys)
                        ).one()
                        deploy, created = deploy_of(row), True
                    conn.execute(update(auto_deploys).where(auto_key(key)).values(deploy_id=deploy.id))
                    return deploy, created
            except IntegrityError:
                # The same deploy was queued by another process meanwhile (PostgreSQL): the
                # transaction rolled back whole, the claim is pending again; the next round finds it.
                continue
        raise RuntimeError(f"could not queue the auto-deploy of {request.repo}@{request.sha}")


def claim_auto_deploy(conn: Connection, claim: AutoDeploy) -> AutoDeploy | None:
    """Insert the pending claim unless this repo + env + SHA has one; newer merge wins."""
    if conn.execute(select(auto_deploys.c.sha).where(auto_key(claim))).first() is not None:
        return None
    conn.execute(
        update(auto_deploys)
        .where(
            auto_deploys.c.repo == claim.repo,
            auto_deploys.c.env == claim.env,
            auto_deploys.c.sha != claim.sha,
            PENDING_AUTO,
        )
        .values(status=AutoDeployStatus.EXPIRED.value, note=f"superseded by {claim.sha[:7]}")
    )
    row = conn.execute(
        insert(auto_deploys)
        .values(
            repo=claim.repo,
            env=claim.env,
            sha=claim.sha,
            created_at=utc_now(),
            status=AutoDeployStatus.PENDING.value,
            requested_by=claim.requested_by,
            deadline=claim.deadline,
            channel=claim.channel,
            message_ts=claim.message_ts,
        )
        .returning(auto_deploys)
    ).one()
    return auto_deploy_of(row)


def auto_key(claim: AutoDeploy) -> ColumnElement[bool]:
    """The row of ``claim``'s repo + env + SHA."""
    return (
        (auto_deploys.c.repo == claim.repo)
        & (auto_deploys.c.env == claim.env)
        & (auto_deploys.c.sha == claim.sha)
    )
