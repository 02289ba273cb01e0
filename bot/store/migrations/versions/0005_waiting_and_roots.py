"""Revision 5: a waiting deploy's note and re-check time, and its Slack root, get columns of their own.

Frozen once released, written out in full. Revision 4 kept them in other columns: while
``waiting``, ``error`` held what the deploy waits for and ``finished_at`` when it is due again;
``message_ts`` held the thread, then ``>`` and the root's ts for a root posted as a reply (a
merge deploy), or ``?<claimed-at epoch>`` while a root was being posted. A top-level root (any
deploy but a merge one) was its own thread: one ts.
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0005_waiting_and_roots"
down_revision: str | None = "0004_lock_events"
branch_labels: str | None = None
depends_on: str | None = None

NEW_COLUMNS = ("root_claimed_at", "root_ts", "recheck_at", "waiting_for")

_deploys = sa.table(
    "deploys",
    sa.column("id", sa.Integer()),
    sa.column("source", sa.String()),
    sa.column("state", sa.String()),
    sa.column("message_ts", sa.String()),
    sa.column("error", sa.Text()),
    sa.column("finished_at", sa.DateTime(timezone=True)),
    sa.column("waiting_for", sa.Text()),
    sa.column("recheck_at", sa.DateTime(timezone=True)),
    sa.column("root_ts", sa.String()),
    sa.column("root_claimed_at", sa.DateTime(timezone=True)),
)
_c = _deploys.c
_ENCODED = _c.message_ts.like("%>%") | _c.message_ts.like("?%")


def upgrade() -> None:
    # Nullable columns: SQLite adds them in place, deploys is not rebuilt.
    with op.batch_alter_table("deploys") as batch:
        batch.add_column(sa.Column("waiting_for", sa.Text(), nullable=True))
        batch.add_column(sa.Column("recheck_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("root_ts", sa.String(64), nullable=True))
        batch.add_column(sa.Column("root_claimed_at", sa.DateTime(timezone=True), nullable=True))
    # SET reads the row as it was before the statement, in both dialects.
    op.execute(
        sa.update(_deploys)
        .where(_c.state == "waiting")
        .values(waiting_for=_c.error, recheck_at=_c.finished_at, error=None, finished_at=None)
    )
    op.execute(
        sa.update(_deploys)
        .where(_c.source != "merge", _c.message_ts.is_not(None), ~_ENCODED)
        .values(root_ts=_c.message_ts)
    )
    bind = op.get_bind()
    encoded = bind.execute(sa.select(_c.id, _c.message_ts).where(_ENCODED)).all()
    for deploy_id, raw in encoded:
        thread, sep, rest = raw.partition(">")
        if not sep:
            thread, rest = "", raw
        values: dict[str, object] = {"message_ts": thread or None}
        if rest.startswith("?"):
            values["root_claimed_at"] = _claimed_at(rest[1:], bind.dialect.name)
        else:
            values["root_ts"] = rest
        bind.execute(sa.update(_deploys).where(_c.id == deploy_id).values(**values))


def _claimed_at(epoch: str, dialect: str) -> datetime | None:
    """The claim's time as the store writes it (naive UTC on SQLite); None if unreadable."""
    try:
        when = datetime.fromtimestamp(float(epoch), UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return when.replace(tzinfo=None) if dialect == "sqlite" else when


def downgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_c.id, _c.source, _c.message_ts, _c.root_ts, _c.root_claimed_at).where(
            _c.root_ts.is_not(None) | _c.root_claimed_at.is_not(None)
        )
    ).all()
    for deploy_id, source, thread, root, claimed in rows:
        if root is not None:
            own = thread is None or (thread == root and source != "merge")
            raw = root if own else f"{thread}>{root}"
        else:
            stamp = claimed if claimed.tzinfo is not None else claimed.replace(tzinfo=UTC)
            token = f"?{stamp.timestamp():.6f}"
            raw = f"{thread}>{token}" if thread else token
        bind.execute(sa.update(_deploys).where(_c.id == deploy_id).values(message_ts=raw))
    op.execute(
        sa.update(_deploys)
        .where(_c.state == "waiting")
        .values(error=_c.waiting_for, finished_at=_c.recheck_at)
    )
    with op.batch_alter_table("deploys", table_kwargs={"sqlite_autoincrement": True}) as batch:
        for column in NEW_COLUMNS:
            batch.drop_column(column)
