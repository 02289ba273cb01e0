"""Where the replicas bench's `/deploy` → step start goes, phase by phase, per deploy.

Built from what the run leaves behind, without instrumenting the robot: when the command was
sent, the store's ``created_at`` (queued) and ``started_at`` (claimed), the fake GitHub's
answered requests (reads naming the deploy's SHA, the deployment it created, its statuses in
order) and the step's own start mark.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bench.lib.poll_world import Stamp
from bench.lib.replica_figures import percentile

PHASES = (
    ("queue", "sent → queued in the store (ack path, other replica's command)"),
    ("claim", "queued → claimed (environment busy, wake-up)"),
    ("reads", "claimed → last GitHub read of its SHA (change list, CI gate)"),
    ("deployment", "→ GitHub deployment created (root wait, write pacing)"),
    ("queued", "→ status `queued` answered (write pacing)"),
    ("in_progress", "→ status `in_progress` answered (write pacing)"),
    ("step", "→ step started (store reads, process spawn)"),
)
_STATUSES = re.compile(r"/deployments/(\d+)/statuses$")


@dataclass(frozen=True)
class Timeline:
    """One deploy's moments (unix seconds); a phase missing from the run is None."""

    deploy: int
    sent: float
    queued: float | None
    claimed: float | None
    reads: float | None
    deployment: float | None
    status_queued: float | None
    status_in_progress: float | None
    step: float

    def phases(self) -> dict[str, float]:
        """Seconds spent in each phase; a missing moment folds its phase into the next one."""
        moments = (
            ("queue", self.queued),
            ("claim", self.claimed),
            ("reads", self.reads),
            ("deployment", self.deployment),
            ("queued", self.status_queued),
            ("in_progress", self.status_in_progress),
            ("step", self.step),
        )
        out: dict[str, float] = {}
        last = self.sent
        for name, at in moments:
            if at is None:
                out[name] = 0.0
                continue
            out[name] = max(0.0, at - last)
            last = max(last, at)
        return out


@dataclass(frozen=True)
class DeployFacts:
    """What the store and the fake GitHub know of one deploy."""

    deploy: int
    sha: str
    created: float | None
    started: float | None
    deployment_id: int | None
    deployment_created: float | None


def timelines(
    sent: Mapping[int, float],
    step_start: Mapping[int, float],
    facts: Sequence[DeployFacts],
    stamps: Sequence[Stamp],
    monotonic_to_unix: float,
) -> list[Timeline]:
    """One timeline per deploy that was both requested and started."""
    statuses: dict[int, list[float]] = {}
    reads: dict[str, list[float]] = {}
    for stamp in stamps:
        at = stamp.at + monotonic_to_unix
        found = _STATUSES.search(stamp.path)
        if stamp.method == "POST" and found:
            statuses.setdefault(int(found.group(1)), []).append(at)
        elif stamp.method == "GET":
            for part in re.split(r"[/.]+", stamp.path):
                if len(part) == 40:
                    reads.setdefault(part, []).append(at)
    out = []
    for fact in facts:
        if fact.deploy not in sent or fact.deploy not in step_start:
            continue
        posted = sorted(statuses.get(fact.deployment_id or -1, []))
        created = fact.deployment_created
        before = [t for t in reads.get(fact.sha, []) if (fact.started or 0) <= t <= (created or t)]
        out.append(
            Timeline(
                fact.deploy,
                sent[fact.deploy],
                fact.created,
                fact.started,
                max(before) if before else None,
                created,
                posted[0] if posted else None,
                posted[1] if len(posted) > 1 else None,
                step_start[fact.deploy],
            )
        )
    return out


def unix_offset() -> float:
    """Add to a time.monotonic() reading to get unix time (now; drift over a run is negligible)."""
    return time.time() - time.monotonic()


def phase_rows(lines: Sequence[Timeline], slowest: int = 3) -> list[str]:
    """Table rows: p50 / p99 / mean per phase, then the slowest deploys phase by phase."""
    if not lines:
        return []
    split = [line.phases() for line in lines]
    rows = []
    for name, label in PHASES:
        values = [s[name] for s in split]
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        mean = sum(values) / len(values)
        rows.append(
            f"phase {label} ({len(values)}) | p50 {p50 * 1000:.0f} / p99 {p99 * 1000:.0f} / "
            f"mean {mean * 1000:.0f} ms | | | (info) |"
        )
    ranked = sorted(
        zip(lines, split, strict=True), key=lambda pair: pair[0].step - pair[0].sent, reverse=True
    )
    for line, parts in ranked[:slowest]:
        shown = ", ".join(f"{name} {parts[name] * 1000:.0f}" for name, _ in PHASES)
        rows.append(
            f"slow deploy #{line.deploy}: {(line.step - line.sent) * 1000:.0f} ms = {shown} (ms)"
            " | | | | (info) |"
        )
    return rows
