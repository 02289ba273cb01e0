"""SqlStore's robot processes: registration, heartbeats (leases), pruning, and their orphaned deploys."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import ColumnElement, delete, exists, func, insert, select, update

from bot.models import Deploy, DeployState, Orphan, ProcessInfo, RobotProcess
from bot.store.lock_rows import drop_expired
from bot.store.plumbing import StoreRows
from bot.store.rows import QUEUED, RUNNING, WAITING, deploy_of, process_of, utc_now
from bot.store.schema import deploys, locks, processes

TAKEOVER_LOCKED_BY = "robot"
"""Who an automatic lock names: the robot itself, after taking over a deploy it cannot check."""


class ProcessRows(StoreRows):
    """The process half of SqlStore (mixed into it): each robot process's lease, and takeovers."""

    def _heartbeat_now(self) -> object:
        return func.now() if self._database_clock else utc_now()

    def register_process(self, info: ProcessInfo) -> RobotProcess:
        """Record a starting robot process; its first heartbeat is now."""
        now = self._heartbeat_now()  # one value: the first heartbeat is the start
        values: dict[str, object] = {
            "host": info.host,
            "pid": info.pid,
            "boot_id": info.boot_id,
            "kind": info.kind.value,
            "started_at": now,
            "heartbeat_at": now,
        }
        with self._write() as conn:
            row = conn.execute(insert(processes).values(**values).returning(processes)).one()
        return process_of(row)

    def heartbeat(self, process_id: int) -> None:
        """Renew the process's lease."""
        with self._write() as conn:
            conn.execute(
                update(processes)
                .where(processes.c.id == process_id)
                .values(heartbeat_at=self._heartbeat_now())
            )

    def stop_process(self, process_id: int) -> None:
        """Record a clean stop: the process's deploys are anybody's at once."""
        with self._write() as conn:
            conn.execute(
                update(processes)
                .where(processes.c.id == process_id, processes.c.stopped_at.is_(None))
                .values(stopped_at=utc_now())
            )

    def prune_processes(self, silent_for: float) -> int:
        """Delete the rows of processes silent for over ``silent_for`` seconds (stopped or dead)
        that own no active deploy; how many went.

        One conditional delete: a row a running deploy names stays, so a takeover still finds
        its owner's host and boot id. A stopped process beats no more, so its row goes too.
        """
        cutoff = heartbeat_cutoff(silent_for, self._database_clock)
        owns = exists().where(
            deploys.c.owner_id == processes.c.id, deploys.c.state.in_([QUEUED, WAITING, RUNNING])
        )
        with self._write() as conn:
            gone = conn.execute(delete(processes).where(processes.c.heartbeat_at < cutoff, ~owns))
        return int(gone.rowcount or 0)

    def get_process(self, process_id: int) -> RobotProcess | None:
        """The registered process with that id, or None."""
        with self._read() as conn:
            row = conn.execute(select(processes).where(processes.c.id == process_id)).first()
        return None if row is None else process_of(row)

    def orphaned_deploys(self, lease: float, exclude: int | None = None) -> list[Orphan]:
        """Running deploys whose owner is unknown, stopped, or silent for over ``lease`` seconds.

        ``exclude``: a process that knows it is alive (the caller) is never its own orphan.
        """
        query = select(deploys).where(deploys.c.state == RUNNING, ~owner_alive(lease, self._database_clock))
        query = query.order_by(deploys.c.id)
        if exclude is not None:
            query = query.where((deploys.c.owner_id.is_(None)) | (deploys.c.owner_id != exclude))
        with self._read() as conn:
            found = [deploy_of(r) for r in conn.execute(query)]
            owner_ids = {d.owner_id for d in found if d.owner_id is not None}
            owners = (
                {
                    p.id: p
                    for p in map(
                        process_of, conn.execute(select(processes).where(processes.c.id.in_(owner_ids)))
                    )
                }
                if owner_ids
                else {}
            )
        return [Orphan(d, owners.get(d.owner_id) if d.owner_id is not None else None) for d in found]

    def take_over(
        self, deploy_id: int, lease: float, error: str, lock_reason: str | None = None
    ) -> Deploy | None:
        """Running → interrupted, only while its owner is still past its lease; None otherwise.

        One conditional write, so of several processes taking the same deploy exactly one gets
        it. ``lock_reason`` locks the deploy's repo + env in the same transaction, so nothing
        can start there between the interrupt and the lock.
        """
        with self._write() as conn:
            row = conn.execute(
                update(deploys)
                .where(
                    deploys.c.id == deploy_id,
                    deploys.c.state == RUNNING,
                    ~owner_alive(lease, self._database_clock),
                )
                .values(state=DeployState.INTERRUPTED.value, finished_at=utc_now(), error=error)
                .returning(deploys)
            ).first()
            if row is not None:
                self._wake(conn)
            if row is not None and lock_reason is not None:
                values: dict[str, object] = {
                    "repo": row.repo,
                    "env": row.env,
                    "locked_by": TAKEOVER_LOCKED_BY,
                    "reason": lock_reason,
                    "locked_at": utc_now(),
                }
                # A person's lock (an incident freeze) stays as it is: it already holds the env.
                # One that ran out holds nothing: it makes way.
                drop_expired(conn, row.repo, row.env, self._database_clock)
                conn.execute(self._upsert(locks, ("repo", "env"), values, keep_existing=True))
        return None if row is None else deploy_of(row)


def owner_alive(lease: float, database_clock: bool) -> ColumnElement[bool]:
    """The deploy's owner is registered, not stopped, and beat within the last ``lease`` seconds.

    ``database_clock``: heartbeats were stamped by the database (PostgreSQL), so the cutoff is the
    database's time too; robots on hosts whose clocks drift never judge each other by them.
    """
    return exists().where(
        processes.c.id == deploys.c.owner_id,
        processes.c.stopped_at.is_(None),
        processes.c.heartbeat_at >= heartbeat_cutoff(lease, database_clock),
    )


def heartbeat_cutoff(seconds: float, database_clock: bool) -> object:
    """``seconds`` ago, on the clock that stamped the heartbeats (the database's on PostgreSQL)."""
    if database_clock:
        return func.now() - func.make_interval(0, 0, 0, 0, 0, 0, seconds)
    return utc_now() - timedelta(seconds=seconds)
