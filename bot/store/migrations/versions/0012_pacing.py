"""Revision 12: a claimed head's announcement, owed until Slack took it (and by which process).

Frozen once released, written out in full.
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_pacing"
down_revision: str | None = "0011_dora_indexes"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("heads") as batch:
        batch.add_column(sa.Column("owed_from", sa.String(64), nullable=True))
        batch.add_column(sa.Column("owed_by", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("heads") as batch:
        batch.drop_column("owed_by")
        batch.drop_column("owed_from")
