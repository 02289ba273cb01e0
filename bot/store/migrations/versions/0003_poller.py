"""Revision 3: auto-deploys get a lifecycle (pending → queued / expired); the SQLite poller lease.

Frozen once released, written out in full. Auto-deploys recorded before this revision were
started when they were recorded: they become ``queued``.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_poller"
down_revision: str | None = "0002_processes"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Nullable columns and one with a constant default: SQLite adds them in place.
    with op.batch_alter_table("auto_deploys") as batch:
        batch.add_column(sa.Column("status", sa.String(20), nullable=False, server_default="queued"))
        batch.add_column(sa.Column("requested_by", sa.String(255), nullable=True))
        batch.add_column(sa.Column("deadline", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("channel", sa.String(255), nullable=True))
        batch.add_column(sa.Column("message_ts", sa.String(64), nullable=True))
        batch.add_column(sa.Column("deploy_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("note", sa.Text(), nullable=True))
    op.create_index("ix_auto_deploys_status", "auto_deploys", ["status"])
    op.create_table(
        "poller_lease",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("poller_lease")
    op.drop_index("ix_auto_deploys_status", table_name="auto_deploys")
    with op.batch_alter_table("auto_deploys") as batch:
        for column in ("note", "deploy_id", "message_ts", "channel", "deadline", "requested_by", "status"):
            batch.drop_column(column)
