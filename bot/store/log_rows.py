"""SqlStore's deploy logs: output appended in chunks, read back whole, pruned after a while."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import delete, exists, func, insert, select
from sqlalchemy.exc import IntegrityError

from bot.errors import UnknownDeploy
from bot.models import FINAL_STATES, Deploy
from bot.store.plumbing import StoreRows
from bot.store.schema import deploy_logs, deploys

MAX_APPEND_ATTEMPTS = 5  # appends after another appender took the same seq (PostgreSQL)
PRUNE_BATCH = 500  # deploys whose logs one prune transaction deletes


class LogRows(StoreRows):
    """The log half of SqlStore (mixed into it): numbered chunks of a deploy's output."""

    if TYPE_CHECKING:

        def get_deploy(self, deploy_id: int) -> Deploy | None: ...

    def append_log(self, deploy_id: int, lines: Sequence[str]) -> None:
        """Store a batch of output lines as one chunk: one small insert per batch."""
        if not lines:
            return
        # Build output may hold NUL bytes (valid UTF-8) that PostgreSQL text refuses outright;
        # the log keeps a visible replacement character instead of failing the deploy.
        text = "\n".join(lines).replace("\x00", "\ufffd")
        next_seq = select(func.coalesce(func.max(deploy_logs.c.seq) + 1, 0)).where(
            deploy_logs.c.deploy_id == deploy_id
        )
        for _ in range(MAX_APPEND_ATTEMPTS):
            try:
                with self._write() as conn:
                    seq = conn.execute(next_seq).scalar_one()
                    conn.execute(insert(deploy_logs).values(deploy_id=deploy_id, seq=seq, text=text))
                    return
            except IntegrityError:
                if self.get_deploy(deploy_id) is None:
                    raise UnknownDeploy(f"There is no deploy #{deploy_id}.") from None
                # Two appenders took the same seq (PostgreSQL); the loser tries the next one.
                continue
        raise RuntimeError(f"could not append to the log of deploy #{deploy_id}")

    def read_log(self, deploy_id: int) -> str:
        """The whole log of a deploy, lines joined by newlines ("" if none)."""
        query = (
            select(deploy_logs.c.text).where(deploy_logs.c.deploy_id == deploy_id).order_by(deploy_logs.c.seq)
        )
        with self._read() as conn:
            return "\n".join(conn.scalars(query))

    def prune_logs(self, finished_before: datetime, batch_size: int = PRUNE_BATCH) -> int:
        """Delete the logs of deploys that ended before ``finished_before``; their rows stay.

        Returns how many deploys lost their log. A batch of deploys per transaction, so a first
        prune of years of logs never holds the write lock long (heartbeats and claims go on).
        SQLite reuses the freed pages for new logs (the file does not shrink).
        """
        batch = (
            select(deploys.c.id)
            .where(
                deploys.c.state.in_([s.value for s in FINAL_STATES]),
                deploys.c.finished_at < finished_before,
                exists().where(deploy_logs.c.deploy_id == deploys.c.id),
            )
            .order_by(deploys.c.id)
            .limit(batch_size)
        )
        pruned = 0
        while True:
            with self._write() as conn:
                ids = list(conn.scalars(batch))
                if ids:
                    conn.execute(delete(deploy_logs).where(deploy_logs.c.deploy_id.in_(ids)))
            pruned += len(ids)
            if len(ids) < batch_size:
                return pruned
