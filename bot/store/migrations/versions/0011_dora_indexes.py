"""Revision 11: indexes for the DORA figures (`robot stats`), measured by bench/stats.py.

Frozen once released, written out in full. Without them the figures over 100,000 deploys took
minutes (each deploy looked for its rollback, and each shipped commit for an earlier shipping, by
a full scan); with them, well under a second.
"""

from alembic import op

revision = "0011_dora_indexes"
down_revision: str | None = "0010_home_views"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_deploys_dora", "deploys", ["repo", "env", "state", "finished_at"])
    op.create_index("ix_deploys_rollback_of", "deploys", ["rollback_of"])
    op.create_index("ix_deploy_commits_sha", "deploy_commits", ["sha", "deploy_id"])


def downgrade() -> None:
    op.drop_index("ix_deploy_commits_sha", table_name="deploy_commits")
    op.drop_index("ix_deploys_rollback_of", table_name="deploys")
    op.drop_index("ix_deploys_dora", table_name="deploys")
