"""Revision 10: who opened the App Home and when, with the repo filter each chose.

Frozen once released, written out in full.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_home_views"
down_revision: str | None = "0009_approvals"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "home_views",
        sa.Column("user_id", sa.String(64), primary_key=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("repo_filter", sa.String(255), nullable=True),
    )
    op.create_index("ix_home_views_opened_at", "home_views", ["opened_at"])


def downgrade() -> None:
    op.drop_index("ix_home_views_opened_at", table_name="home_views")
    op.drop_table("home_views")
