"""SqlStore's rows ↔ values: each table's row as its typed value, a new deploy's row, the states."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Row

from bot.models import (
    ACTIVE_STATES,
    Approval,
    AutoDeploy,
    AutoDeployStatus,
    Deploy,
    DeployRequest,
    DeployState,
    Lock,
    ProcessKind,
    RobotProcess,
    Source,
)

ACTIVE = [s.value for s in ACTIVE_STATES]
QUEUED = DeployState.QUEUED.value
WAITING = DeployState.WAITING.value
RUNNING = DeployState.RUNNING.value
AWAITING = DeployState.AWAITING_APPROVAL.value
HOLDING = [WAITING, RUNNING]  # a deploy in these states holds its repo + env
RECHECKED = [WAITING, AWAITING]  # due at `recheck_at`: a CI re-check, an approval's expiry


def utc_now() -> datetime:
    """Now, on this host's clock (UTC)."""
    return datetime.now(UTC)


def deploy_of(row: Row[tuple[object, ...]]) -> Deploy:
    """A ``deploys`` row as a Deploy."""
    m = row._mapping
    return Deploy(
        id=m["id"],
        repo=m["repo"],
        env=m["env"],
        ref=m["ref"],
        sha=m["sha"],
        requested_by=m["requested_by"],
        source=Source(m["source"]),
        state=DeployState(m["state"]),
        force=bool(m["force"]),
        github_deployment_id=m["github_deployment_id"],
        channel=m["channel"],
        message_ts=m["message_ts"],
        created_at=m["created_at"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        error=m["error"],
        cancel_requested=bool(m["cancel_requested"]),
        owner_id=m["owner_id"],
        step_pgid=m["step_pgid"],
        recheck_at=m["recheck_at"],
        root_ts=m["root_ts"],
        root_claimed_at=m["root_claimed_at"],
        waiting_for=m["waiting_for"],
        rollback_of=m["rollback_of"],
    )


def new_deploy(request: DeployRequest) -> dict[str, object]:
    """The row of a newly queued deploy (awaiting approval, due to expire, where it needs one)."""
    awaiting = request.approval_timeout is not None
    return {
        "repo": request.repo,
        "env": request.env,
        "ref": request.ref,
        "sha": request.sha,
        "requested_by": request.requested_by,
        "source": request.source.value,
        "state": QUEUED,
        "force": request.force,
        "channel": request.channel,
        "message_ts": request.message_ts,
        # Any deploy but a merge one given a thread has that message as its root.
        "root_ts": request.message_ts if request.source is not Source.MERGE else None,
        "created_at": utc_now(),
        "cancel_requested": False,
        "rollback_of": request.rollback_of,
        **(_awaiting_approval(request.approval_timeout) if awaiting else {}),
    }


def _awaiting_approval(timeout: float | None) -> dict[str, object]:
    """A new deploy awaiting approval: expired at ``recheck_at`` unless approved by then."""
    return {"state": AWAITING, "recheck_at": utc_now() + timedelta(seconds=timeout or 0)}


def process_of(row: Row[tuple[object, ...]]) -> RobotProcess:
    """A ``processes`` row as a RobotProcess."""
    m = row._mapping
    return RobotProcess(
        id=m["id"],
        host=m["host"],
        pid=m["pid"],
        boot_id=m["boot_id"],
        kind=ProcessKind(m["kind"]),
        started_at=m["started_at"],
        heartbeat_at=m["heartbeat_at"],
        stopped_at=m["stopped_at"],
    )


def lock_of(row: Row[tuple[object, ...]]) -> Lock:
    """A ``locks`` row as a Lock."""
    m = row._mapping
    return Lock(
        repo=m["repo"],
        env=m["env"],
        locked_by=m["locked_by"],
        reason=m["reason"],
        locked_at=m["locked_at"],
        expires_at=m["expires_at"],
    )


def approval_of(row: Row[tuple[object, ...]]) -> Approval:
    """An ``approvals`` row as an Approval."""
    m = row._mapping
    return Approval(deploy_id=m["deploy_id"], approver=m["approver"], at=m["approved_at"])


def auto_deploy_of(row: Row[tuple[object, ...]]) -> AutoDeploy:
    """An ``auto_deploys`` row as an AutoDeploy."""
    m = row._mapping
    return AutoDeploy(
        repo=m["repo"],
        env=m["env"],
        sha=m["sha"],
        status=AutoDeployStatus(m["status"]),
        requested_by=m["requested_by"] or "merge",
        deadline=m["deadline"] or m["created_at"],
        channel=m["channel"],
        message_ts=m["message_ts"],
        deploy_id=m["deploy_id"],
        note=m["note"],
    )


def as_utc(when: datetime | None) -> datetime | None:
    """A time the database read back, made aware (SQLite returns naive UTC)."""
    if when is None:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
