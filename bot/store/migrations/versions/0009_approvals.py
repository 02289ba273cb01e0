"""Revision 9: who approved which deploy, and when (environments with `approvals:`).

Frozen once released, written out in full. The new deploy states (awaiting_approval, rejected,
expired) are values of the existing `state` column: no change there.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_approvals"
down_revision: str | None = "0008_lock_expiry"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "approvals",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("deploy_id", sa.Integer(), sa.ForeignKey("deploys.id"), nullable=False),
        sa.Column("approver", sa.String(255), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ux_approvals_deploy_approver", "approvals", ["deploy_id", "approver"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_approvals_deploy_approver", table_name="approvals")
    op.drop_table("approvals")
