"""Revision 6: a rollback records the deploy it undoes (``deploys.rollback_of``).

Frozen once released, written out in full.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_rollbacks"
down_revision: str | None = "0005_waiting_and_roots"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # A nullable column: SQLite adds it in place, deploys is not rebuilt.
    with op.batch_alter_table("deploys") as batch:
        batch.add_column(sa.Column("rollback_of", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deploys", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("rollback_of")
