"""Revision 8: a lock may expire (``locks.expires_at``; NULL: it holds until someone unlocks).

Frozen once released, written out in full.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_lock_expiry"
down_revision: str | None = "0007_change_lists"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Nullable: SQLite adds it in place, and every existing lock keeps holding until unlocked.
    with op.batch_alter_table("locks") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # An older robot knows no expiry: a lock that ran out is lifted rather than made permanent.
    locks = sa.table("locks", sa.column("expires_at", sa.DateTime(timezone=True)))
    op.execute(
        sa.delete(locks).where(
            locks.c.expires_at.is_not(None), locks.c.expires_at <= sa.func.current_timestamp()
        )
    )
    with op.batch_alter_table("locks") as batch:
        batch.drop_column("expires_at")
