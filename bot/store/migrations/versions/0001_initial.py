"""Revision 1: deploys, deploy_logs, locks, heads and auto_deploys, as first released.

Frozen: later schema changes are new revisions, never edits here. Written out in full (no
reference to bot.store.schema or bot.models) so that later changes there cannot alter it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_ACTIVE = "state IN ('queued', 'running')"
_RUNNING = "state = 'running'"


def upgrade() -> None:
    op.create_table(
        "auto_deploys",
        sa.Column("repo", sa.String(255), primary_key=True),
        sa.Column("env", sa.String(255), primary_key=True),
        sa.Column("sha", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "deploys",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("repo", sa.String(255), nullable=False),
        sa.Column("env", sa.String(255), nullable=False),
        sa.Column("ref", sa.String(255), nullable=False),
        sa.Column("sha", sa.String(64), nullable=False),
        sa.Column("requested_by", sa.String(255), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("force", sa.Boolean(), nullable=False),
        sa.Column("github_deployment_id", sa.BigInteger(), nullable=True),
        sa.Column("channel", sa.String(255), nullable=True),
        sa.Column("message_ts", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        # Ids are never reused, also after the newest deploys are deleted.
        sqlite_autoincrement=True,
    )
    op.create_index("ix_deploys_repo_env_id", "deploys", ["repo", "env", "id"])
    op.create_index("ix_deploys_state_id", "deploys", ["state", "id"])
    op.create_index(
        "ux_deploys_active_sha",
        "deploys",
        ["repo", "env", "sha"],
        unique=True,
        sqlite_where=sa.text(_ACTIVE),
        postgresql_where=sa.text(_ACTIVE),
    )
    op.create_index(
        "ux_deploys_running_env",
        "deploys",
        ["repo", "env"],
        unique=True,
        sqlite_where=sa.text(_RUNNING),
        postgresql_where=sa.text(_RUNNING),
    )
    op.create_table(
        "heads",
        sa.Column("repo", sa.String(255), primary_key=True),
        sa.Column("sha", sa.String(64), nullable=False),
        sa.Column("etag", sa.String(255), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "locks",
        sa.Column("repo", sa.String(255), primary_key=True),
        sa.Column("env", sa.String(255), primary_key=True),
        sa.Column("locked_by", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("locked_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "deploy_logs",
        sa.Column(
            "deploy_id", sa.Integer(), sa.ForeignKey("deploys.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("text", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    for table in ("deploy_logs", "locks", "heads", "deploys", "auto_deploys"):
        op.drop_table(table)
