"""Revision 4: a history of locks and unlocks (who, when, why), kept after a lock is lifted.

Frozen once released, written out in full.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_lock_events"
down_revision: str | None = "0003_poller"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "lock_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("repo", sa.String(255), nullable=False),
        sa.Column("env", sa.String(255), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_lock_events_repo_env_id", "lock_events", ["repo", "env", "id"])


def downgrade() -> None:
    op.drop_index("ix_lock_events_repo_env_id", table_name="lock_events")
    op.drop_table("lock_events")
