"""Deploy history for scripts: `robot status` filters parsed and checked, and its `--json` document."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time
from typing import Any

from bot.errors import BadCommand, InvalidDuration
from bot.models import Approval, Deploy, DeployState, Lock
from bot.text import shown
from bot.validation import parse_duration

MAX_LIMIT = 10_000
"""The most rows one `robot status` returns: a script pages with --since beyond that."""
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_states(values: Sequence[str] | None) -> tuple[DeployState, ...] | None:
    """``--state`` values (each repeatable or a comma list) as states; BadCommand names the valid ones."""
    if not values:
        return None
    names = [part.strip().lower() for value in values for part in value.split(",") if part.strip()]
    valid = {state.value: state for state in DeployState}
    unknown = [name for name in names if name not in valid]
    if unknown or not names:
        bad = ", ".join(f"`{shown(name)}`" for name in unknown) or "an empty list"
        raise BadCommand(f"--state: {bad} is not a deploy state; valid states: {', '.join(valid)}.")
    return tuple(dict.fromkeys(valid[name] for name in names))


def parse_since(text: str | None, now: datetime) -> datetime | None:
    """``--since``: an ISO 8601 date or date-time (UTC unless it says otherwise) or a duration back
    from ``now`` (``7d``, ``12h``, ``30m``, ``1w``); BadCommand says which forms are valid."""
    if text is None:
        return None
    value = text.strip()
    try:
        return now - parse_duration(value)
    except InvalidDuration:
        pass
    try:
        if _DATE_ONLY.fullmatch(value):
            return datetime.combine(date.fromisoformat(value), time(), UTC)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadCommand(
            f"--since: `{shown(text)}` is neither an ISO 8601 date or time (2026-12-01, "
            "2026-12-01T13:05:00Z) nor a duration back from now (30m, 12h, 7d, 1w)."
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def check_limit(limit: int) -> int:
    """``--limit`` within 1…MAX_LIMIT, else BadCommand."""
    if not 1 <= limit <= MAX_LIMIT:
        raise BadCommand(f"--limit: {limit} is out of range; give 1 to {MAX_LIMIT}.")
    return limit


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC to the second with a Z (``2026-12-01T13:05:00Z``); None stays None."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def deploy_record(deploy: Deploy, approvals: Sequence[Approval] = ()) -> dict[str, Any]:
    """One deploy as `robot status --json` prints it: every field a script needs, stable keys."""
    took = deploy.duration_seconds
    return {
        "id": deploy.id,
        "repo": deploy.repo,
        "env": deploy.env,
        "ref": deploy.ref,
        "sha": deploy.sha,
        "state": deploy.state.value,
        "requested_by": str(deploy.requester),
        "source": deploy.source.value,
        "force": deploy.force,
        "created_at": iso(deploy.created_at),
        "started_at": iso(deploy.started_at),
        "finished_at": iso(deploy.finished_at),
        "duration_seconds": None if took is None else round(took, 3),
        "error": deploy.error,
        "waiting_for": deploy.waiting_for,
        "github_deployment_id": deploy.github_deployment_id,
        "channel": deploy.channel,
        "thread_ts": deploy.message_ts,
        "root_ts": deploy.root_ts,
        "rollback_of": deploy.rollback_of,
        "approved_by": [{"by": a.approver, "at": iso(a.at)} for a in approvals],
    }


def lock_record(lock: Lock) -> dict[str, Any]:
    """One lock as `robot status --json` prints it."""
    return {
        "repo": lock.repo,
        "env": lock.env,
        "locked_by": str(lock.locker),
        "reason": lock.reason,
        "locked_at": iso(lock.locked_at),
        "expires_at": iso(lock.expires_at),
    }


def history_document(
    deploys: Iterable[Deploy],
    locks: Iterable[Lock],
    approvals: Mapping[int, Sequence[Approval]] | None = None,
) -> dict[str, Any]:
    """`robot status --json`: ``{"deploys": [...newest first], "locks": [...]}``."""
    given = approvals or {}
    return {
        "deploys": [deploy_record(d, given.get(d.id, ())) for d in deploys],
        "locks": [lock_record(lock) for lock in locks],
    }
