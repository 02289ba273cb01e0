"""Revision 2: registered robot processes with heartbeats; each running deploy's owner and step group.

Frozen once released, written out in full like revision 1. Deploys running when this runs get
no owner, which every robot treats as an owner that is gone.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_processes"
down_revision: str | None = "0001_initial"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "processes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("boot_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
    )
    # Nullable columns: SQLite adds them in place, so the table and its partial indexes stay.
    with op.batch_alter_table("deploys", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.add_column(sa.Column("owner_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("step_pgid", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deploys", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("step_pgid")
        batch.drop_column("owner_id")
    op.drop_table("processes")
