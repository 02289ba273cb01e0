"""The store's tables and the UTC timestamp column type they share."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)

from bot.models import DeployState


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that goes in and comes out timezone-aware UTC, whatever the database."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the store takes timezone-aware datetimes only")
        value = value.astimezone(UTC)
        # SQLite has no timezone type: store naive UTC so text ordering stays chronological.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


metadata = MetaData()

deploys = Table(
    "deploys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("repo", String(255), nullable=False),
    Column("env", String(255), nullable=False),
    Column("ref", String(255), nullable=False),
    Column("sha", String(64), nullable=False),
    Column("requested_by", String(255), nullable=False),
    Column("source", String(20), nullable=False),
    Column("state", String(20), nullable=False),
    Column("force", Boolean, nullable=False, default=False),
    Column("github_deployment_id", BigInteger, nullable=True),
    Column("channel", String(255), nullable=True),
    # The deploy's Slack thread: its root, or the merge announcement a merge deploy replies to.
    Column("message_ts", String(64), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime, nullable=True),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("error", Text, nullable=True),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    # No foreign key: an owner that is unknown counts as dead, like one whose lease ran out.
    Column("owner_id", Integer, nullable=True),
    Column("step_pgid", Integer, nullable=True),
    # While `waiting`: what it waits for, and when its CI gate is next due.
    Column("waiting_for", Text, nullable=True),
    Column("recheck_at", UTCDateTime, nullable=True),
    # The Slack root once posted; while a process posts it, when that process claimed it.
    Column("root_ts", String(64), nullable=True),
    Column("root_claimed_at", UTCDateTime, nullable=True),
    # A rollback: the deploy it undoes (whose SHA was current). No foreign key, like owner_id:
    # the history stays readable whatever happens to the undone row.
    Column("rollback_of", Integer, nullable=True),
    # Ids must never be reused: FIFO order and "Deploy #42" both rely on them.
    sqlite_autoincrement=True,
)

# The partial indexes' predicates are those of migrations 0001/0002: `waiting` (CI pending) is
# outside them, so SqlStore enforces dedupe and one-at-a-time for it with conditional writes
# (serialized per repo + env: SQLite's write lock, PostgreSQL's transaction advisory lock).
_active = deploys.c.state.in_([DeployState.QUEUED.value, DeployState.RUNNING.value])
_running = deploys.c.state == DeployState.RUNNING.value

# Dedupe: at most one queued-or-running deploy per repo+env+sha, enforced by the database.
Index(
    "ux_deploys_active_sha",
    deploys.c.repo,
    deploys.c.env,
    deploys.c.sha,
    unique=True,
    sqlite_where=_active,
    postgresql_where=_active,
)
# One running deploy per repo+env, whichever process claims it.
Index(
    "ux_deploys_running_env",
    deploys.c.repo,
    deploys.c.env,
    unique=True,
    sqlite_where=_running,
    postgresql_where=_running,
)
Index("ix_deploys_state_id", deploys.c.state, deploys.c.id)
Index("ix_deploys_repo_env_id", deploys.c.repo, deploys.c.env, deploys.c.id)
# The DORA figures (bot/store/stats.py): finished deploys of an environment in a time window,
# the rollback of a deploy, and the earlier deploys that shipped a commit.
Index("ix_deploys_dora", deploys.c.repo, deploys.c.env, deploys.c.state, deploys.c.finished_at)
Index("ix_deploys_rollback_of", deploys.c.rollback_of)

# Every robot process (`robot run`, `robot deploy`) that shares this store, with its heartbeat:
# a running deploy is taken from its owner only once the owner's heartbeat is older than the lease.
processes = Table(
    "processes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("boot_id", String(64), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False),
    Column("stopped_at", UTCDateTime, nullable=True),
)

deploy_logs = Table(
    "deploy_logs",
    metadata,
    Column(
        "deploy_id",
        Integer,
        ForeignKey("deploys.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("text", Text, nullable=False),
)

locks = Table(
    "locks",
    metadata,
    Column("repo", String(255), primary_key=True),
    Column("env", String(255), primary_key=True),
    Column("locked_by", String(255), nullable=False),
    Column("reason", Text, nullable=False),
    Column("locked_at", UTCDateTime, nullable=False),
    # A lock past this time refuses nothing; the first robot to notice deletes it and says so.
    Column("expires_at", UTCDateTime, nullable=True),
)

# Every lock and unlock, kept after the lock itself is gone: who lifted a freeze, and when.
lock_events = Table(
    "lock_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("repo", String(255), nullable=False),
    Column("env", String(255), nullable=False),
    Column("action", String(20), nullable=False),  # locked | unlocked
    Column("actor", String(255), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    sqlite_autoincrement=True,
)
Index("ix_lock_events_repo_env_id", lock_events.c.repo, lock_events.c.env, lock_events.c.id)

heads = Table(
    "heads",
    metadata,
    Column("repo", String(255), primary_key=True),
    Column("sha", String(64), nullable=False),
    Column("etag", String(255), nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    # A claimed move from owed_from to sha whose announcement Slack has not taken yet, and the
    # process that posts it: another poller re-posts it only once that process is dead.
    Column("owed_from", String(64), nullable=True),
    Column("owed_by", Integer, nullable=True),
)

# Merge auto-deploys, claimed with their merge's head: the primary key makes "once per repo +
# env + SHA" hold across polls, restarts and replicas, whatever CI statuses do afterwards.
# pending → queued (with its deploy, in one transaction) or expired; rows older than the status
# column were all started already.
auto_deploys = Table(
    "auto_deploys",
    metadata,
    Column("repo", String(255), primary_key=True),
    Column("env", String(255), primary_key=True),
    Column("sha", String(64), primary_key=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("status", String(20), nullable=False, server_default="queued"),
    Column("requested_by", String(255), nullable=True),
    Column("deadline", UTCDateTime, nullable=True),
    Column("channel", String(255), nullable=True),
    Column("message_ts", String(64), nullable=True),
    Column("deploy_id", Integer, nullable=True),
    Column("note", Text, nullable=True),
)
Index("ix_auto_deploys_status", auto_deploys.c.status)

# Who polls merges, on SQLite (PostgreSQL uses a session advisory lock instead): one row per
# name, taken or renewed with one conditional write while its holder's lease has not run out.
poller_lease = Table(
    "poller_lease",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", Integer, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

# GitHub comparisons of two SHAs, fetched once by any robot process and read by all: a second
# deploy (or `/deploy changes`) over the same pair costs no GitHub call. ``commits`` is JSON.
comparisons = Table(
    "comparisons",
    metadata,
    Column("repo", String(255), primary_key=True),
    Column("base_sha", String(64), primary_key=True),
    Column("head_sha", String(64), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("ahead_by", Integer, nullable=False),
    Column("behind_by", Integer, nullable=False),
    Column("total_commits", Integer, nullable=False),
    Column("commits", Text, nullable=False),
    Column("fetched_at", UTCDateTime, nullable=False),
)

# Each deploy's change list: what its environment ran before it (the newest succeeded deploy
# there, when it was claimed) and how its commit stands against that; its commits below.
deploy_changes = Table(
    "deploy_changes",
    metadata,
    Column("deploy_id", Integer, ForeignKey("deploys.id", ondelete="CASCADE"), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("base_sha", String(64), nullable=True),
    Column("base_deploy_id", Integer, nullable=True),
    Column("base_at", UTCDateTime, nullable=True),
    Column("ahead_by", Integer, nullable=False),
    Column("behind_by", Integer, nullable=False),
    Column("note", Text, nullable=False),
)

# The commits each deploy ships, oldest first: with the deploy's end, what lead time is made of.
deploy_commits = Table(
    "deploy_commits",
    metadata,
    Column("deploy_id", Integer, ForeignKey("deploys.id", ondelete="CASCADE"), primary_key=True),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("sha", String(64), nullable=False),
    Column("committed_at", UTCDateTime, nullable=True),
    Column("author", String(255), nullable=False),
    Column("title", Text, nullable=False),
)
Index("ix_deploy_commits_sha", deploy_commits.c.sha, deploy_commits.c.deploy_id)

# Who approved which deploy (environments with `approvals:`), once per approver: the unique
# index makes a double approve count once, whichever process records it.
approvals = Table(
    "approvals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deploy_id", Integer, ForeignKey("deploys.id"), nullable=False),
    Column("approver", String(255), nullable=False),
    Column("approved_at", UTCDateTime, nullable=False),
    sqlite_autoincrement=True,
)
Index("ux_approvals_deploy_approver", approvals.c.deploy_id, approvals.c.approver, unique=True)

# Who opened the robot's App Home and when (their views are republished for a day after), with
# the repo filter each chose: in the store, so whichever replica changes a deploy republishes.
home_views = Table(
    "home_views",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("opened_at", UTCDateTime, nullable=False),
    Column("repo_filter", String(255), nullable=True),
)
Index("ix_home_views_opened_at", home_views.c.opened_at)
