"""Poll cycles over many repos in this process: the robot's Poller against the naive unconditional GET.

Real parts: GitHubGateway over HTTP to the fake GitHub, SqlStore in a temp dir, the DeployService
from bot.wiring.build_core. Only the announcer is a counter, so a cycle's figures are GitHub's.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.lib.poll_world import PollWorld
from bot.models import AnnouncementRef, MergeNews
from bot.poller import Poller, PollOutcome, PollReport
from tests.fakes.memory import RecordingObserver
from tests.support.harness import start_core


@dataclass(frozen=True)
class Cycle:
    """One pass over every repo: HTTP requests the fake answered, units it charged, wall seconds."""

    requests: int
    units: int
    wall: float
    not_modified: int  # 304 answers among the requests


@dataclass
class CycleStats:
    """Several cycles of one kind."""

    cycles: list[Cycle] = field(default_factory=list)

    @property
    def requests(self) -> float:
        return statistics.median(c.requests for c in self.cycles)

    @property
    def units(self) -> float:
        return statistics.median(c.units for c in self.cycles)

    @property
    def max_units(self) -> int:
        return max(c.units for c in self.cycles)

    @property
    def wall(self) -> float:
        return statistics.median(c.wall for c in self.cycles)

    @property
    def not_modified(self) -> float:
        return statistics.median(c.not_modified for c in self.cycles)


@dataclass
class CycleResults:
    """Everything the in-process part measured."""

    repos: int
    first: Cycle | None = None
    idle: CycleStats = field(default_factory=CycleStats)
    merges: CycleStats = field(default_factory=CycleStats)
    merged_per_cycle: int = 0
    announced: list[int] = field(default_factory=list)  # announcements per merge cycle
    after_merges: CycleStats = field(default_factory=CycleStats)  # idle again: new ETags kept
    naive: CycleStats = field(default_factory=CycleStats)
    problems: list[str] = field(default_factory=list)


class CountingAnnouncer:
    """A MergeAnnouncer that only counts (and keeps the news, to check what was announced)."""

    def __init__(self) -> None:
        self.news: list[MergeNews] = []
        self._lock = threading.Lock()

    def announce(
        self, news: MergeNews, posted: Callable[[AnnouncementRef], None] | None = None
    ) -> AnnouncementRef | None:
        with self._lock:
            self.news.append(news)
            where = AnnouncementRef("C0DEPLOYS", f"1700000000.{len(self.news):06d}")
        if posted is not None:
            posted(where)
        return where

    def announce_problem(self, repo: str, text: str, thread: AnnouncementRef | None = None) -> None:
        """Nothing to count: a problem is reported by the poll's outcome too."""


def measure_cycles(world: PollWorld, idle_cycles: int, merges: int, merge_cycles: int) -> CycleResults:
    """First cycle, idle cycles (each followed by a naive one on the same gateway), merges, idle again."""
    config = world.config("cycles", poll_interval=30)
    core = start_core(config, RecordingObserver())
    results = CycleResults(len(world.repos))
    announcer = CountingAnnouncer()
    # A fixed clock: the bench calls poll_once back to back, so no pacing may depend on time passing.
    frozen = time.time()
    poller = Poller(core.settings, core.github, core.store, core.service, announcer, clock=lambda: frozen)
    try:
        results.first, report = _timed(world, poller.poll_once)
        _expect(results, report, PollOutcome.FIRST_SEEN, len(world.repos), "first cycle")
        for _ in range(idle_cycles):
            cycle, report = _timed(world, poller.poll_once)
            results.idle.cycles.append(cycle)
            _expect(results, report, PollOutcome.UNCHANGED, len(world.repos), "idle cycle")
            # Interleaved with the robot's cycles, so drift on a busy machine hits both alike.
            cycle, _ = _timed(world, lambda: _naive_cycle(world, core.github.poll_head))
            results.naive.cycles.append(cycle)
        results.merged_per_cycle = merges
        moved = iter(world.repos)
        for _ in range(merge_cycles):
            for repo in [next(moved) for _ in range(merges)]:
                world.merge(repo)
            before = len(announcer.news)
            cycle, report = _timed(world, poller.poll_once)
            results.merges.cycles.append(cycle)
            results.announced.append(len(announcer.news) - before)
            _expect(results, report, PollOutcome.ANNOUNCED, merges, "merge cycle")
        for _ in range(max(1, idle_cycles // 2)):
            cycle, report = _timed(world, poller.poll_once)
            results.after_merges.cycles.append(cycle)
            _expect(results, report, PollOutcome.UNCHANGED, len(world.repos), "idle cycle after merges")
    finally:
        core.github.close()
        core.close()
    return results


def _naive_cycle(world: PollWorld, poll_head: Callable[..., object]) -> None:
    """The naive poll: GET every branch with no ETag (same client, same code path as the robot)."""
    for repo in world.repos:
        poll_head(repo, "main", None)


def _timed(world: PollWorld, run: Callable[[], PollReport | None]) -> tuple[Cycle, PollReport | None]:
    log_before, units_before = len(world.github.requests), world.github.units_used
    start = time.perf_counter()
    report = run()
    wall = time.perf_counter() - start
    answered = world.github.requests[log_before:]
    cycle = Cycle(
        requests=len(answered),
        units=world.github.units_used - units_before,
        wall=wall,
        not_modified=sum(1 for r in answered if r.status == 304),
    )
    return cycle, report


def _expect(
    results: CycleResults, report: PollReport | None, outcome: PollOutcome, count: int, what: str
) -> None:
    """Note (not raise) when a cycle did not do what the bench set up: its figures would mislead."""
    if report is None:
        return
    got = report.with_outcome(outcome)
    if len(got) != count:
        others = {r.outcome.value for r in report.repos.values() if r.outcome is not outcome}
        details = [f"{name}: {r.detail}" for name, r in report.repos.items() if r.outcome is not outcome][:3]
        results.problems.append(
            f"{what}: {len(got)} repos {outcome.value}, expected {count} "
            f"(others: {sorted(others)}; {details})"
        )
