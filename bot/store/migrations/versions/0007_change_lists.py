"""Revision 7: change lists: a shared cache of GitHub comparisons, each deploy's change list and
the commits it ships.

Frozen once released, written out in full.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_change_lists"
down_revision: str | None = "0006_rollbacks"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "comparisons",
        sa.Column("repo", sa.String(255), primary_key=True),
        sa.Column("base_sha", sa.String(64), primary_key=True),
        sa.Column("head_sha", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("ahead_by", sa.Integer(), nullable=False),
        sa.Column("behind_by", sa.Integer(), nullable=False),
        sa.Column("total_commits", sa.Integer(), nullable=False),
        sa.Column("commits", sa.Text(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "deploy_changes",
        sa.Column(
            "deploy_id",
            sa.Integer(),
            sa.ForeignKey("deploys.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("base_sha", sa.String(64), nullable=True),
        sa.Column("base_deploy_id", sa.Integer(), nullable=True),
        sa.Column("base_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ahead_by", sa.Integer(), nullable=False),
        sa.Column("behind_by", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
    )
    op.create_table(
        "deploy_commits",
        sa.Column(
            "deploy_id",
            sa.Integer(),
            sa.ForeignKey("deploys.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("sha", sa.String(64), nullable=False),
        sa.Column("committed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("author", sa.String(255), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("deploy_commits")
    op.drop_table("deploy_changes")
    op.drop_table("comparisons")
