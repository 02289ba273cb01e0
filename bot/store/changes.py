"""SqlStore's change-list rows: the shared comparison cache, each deploy's change list and commits."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from bot.errors import UnknownDeploy
from bot.models import ChangeKind, ChangeList, CommitInfo, Comparison
from bot.store.plumbing import StoreRows
from bot.store.schema import comparisons, deploy_changes, deploy_commits, deploys

# A commit title is one line of a message; this keeps a pathological one from filling a row.
MAX_TITLE = 1000
MAX_AUTHOR = 255


class ChangeListRows(StoreRows):
    """The change-list half of SqlStore (mixed into it): four small reads and writes."""

    def get_comparison(self, repo: str, base: str, head: str) -> Comparison | None:
        """The comparison of two SHAs some robot process fetched before; None if none did."""
        c = comparisons.c
        query = select(comparisons).where(c.repo == repo, c.base_sha == base, c.head_sha == head)
        with self._read() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        m = row._mapping
        return Comparison(
            status=m["status"],
            ahead_by=m["ahead_by"],
            behind_by=m["behind_by"],
            total_commits=m["total_commits"],
            commits=tuple(_commit_from_json(item) for item in json.loads(m["commits"])),
        )

    def put_comparison(self, repo: str, base: str, head: str, comparison: Comparison) -> None:
        """Keep a fetched comparison for every process (the first one kept for a pair stays)."""
        values: dict[str, object] = {
            "repo": repo,
            "base_sha": base,
            "head_sha": head,
            "status": comparison.status,
            "ahead_by": comparison.ahead_by,
            "behind_by": comparison.behind_by,
            "total_commits": comparison.total_commits,
            "commits": json.dumps([_commit_to_json(c) for c in comparison.commits]),
            "fetched_at": datetime.now(UTC),
        }
        with self._write() as conn:
            pair = ("repo", "base_sha", "head_sha")
            conn.execute(self._upsert(comparisons, pair, values, keep_existing=True))

    def record_changes(self, deploy_id: int, changes: ChangeList) -> None:
        """Record a deploy's change list and the commits it ships (replacing any before)."""
        row: dict[str, object] = {
            "deploy_id": deploy_id,
            "kind": changes.kind.value,
            "base_sha": changes.base_sha,
            "base_deploy_id": changes.base_deploy_id,
            "base_at": changes.base_at,
            "ahead_by": changes.ahead_by,
            "behind_by": changes.behind_by,
            "note": changes.note,
        }
        commits = [
            {
                "deploy_id": deploy_id,
                "position": position,
                "sha": commit.sha,
                "committed_at": commit.committed_at,
                "author": commit.author[:MAX_AUTHOR],
                "title": commit.title[:MAX_TITLE],
            }
            for position, commit in enumerate(changes.commits)
        ]
        try:
            with self._write() as conn:
                conn.execute(delete(deploy_commits).where(deploy_commits.c.deploy_id == deploy_id))
                conn.execute(delete(deploy_changes).where(deploy_changes.c.deploy_id == deploy_id))
                conn.execute(insert(deploy_changes).values(row))
                if commits:
                    conn.execute(insert(deploy_commits), commits)
        except IntegrityError:
            raise UnknownDeploy(f"There is no deploy #{deploy_id}.") from None

    def get_changes(self, deploy_id: int) -> ChangeList | None:
        """A deploy's change list as recorded; None before it was worked out."""
        head = select(deploy_changes).where(deploy_changes.c.deploy_id == deploy_id)
        sha = select(deploys.c.sha).where(deploys.c.id == deploy_id)
        listed = (
            select(deploy_commits)
            .where(deploy_commits.c.deploy_id == deploy_id)
            .order_by(deploy_commits.c.position)
        )
        with self._read() as conn:
            row = conn.execute(head).first()
            if row is None:
                return None
            head_sha = conn.execute(sha).scalar_one_or_none() or ""
            commits = tuple(
                CommitInfo(r.sha, r.title, (), r.author, r.committed_at) for r in conn.execute(listed)
            )
        m = row._mapping
        return ChangeList(
            kind=ChangeKind(m["kind"]),
            head_sha=head_sha,
            base_sha=m["base_sha"],
            base_deploy_id=m["base_deploy_id"],
            base_at=m["base_at"],
            ahead_by=m["ahead_by"],
            behind_by=m["behind_by"],
            commits=commits,
            note=m["note"],
        )


def _commit_to_json(commit: CommitInfo) -> dict[str, Any]:
    return {
        "sha": commit.sha,
        "title": commit.title,
        "parents": list(commit.parents),
        "author": commit.author,
        "committed_at": commit.committed_at.isoformat() if commit.committed_at else None,
    }


def _commit_from_json(item: dict[str, Any]) -> CommitInfo:
    when = item.get("committed_at")
    return CommitInfo(
        sha=str(item["sha"]),
        title=str(item.get("title") or ""),
        parents=tuple(str(p) for p in item.get("parents") or ()),
        author=str(item.get("author") or ""),
        committed_at=datetime.fromisoformat(when) if isinstance(when, str) else None,
    )
