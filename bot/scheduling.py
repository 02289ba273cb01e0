"""The robot's clock: APScheduler 3.x interval jobs (the only module importing it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from apscheduler.executors.pool import BasePoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from bot.daemon_pool import DaemonThreadPool

JOB_THREADS = 4


class _DaemonExecutor(BasePoolExecutor):  # type: ignore[misc]
    """APScheduler's pool executor on daemon threads: a poll waiting on a slow GitHub when the
    robot stops must not hold its exit."""

    def __init__(self) -> None:
        super().__init__(DaemonThreadPool(JOB_THREADS, "job"))


@dataclass(frozen=True)
class Job:
    """Something `robot run` does every ``every`` seconds, starting now."""

    name: str
    run: Callable[[], object]
    every: float


def start_jobs(*jobs: Job) -> Callable[[], None]:
    """Run each job now and then every ``every`` s; never two runs of one job at once, missed runs
    coalesced. Returns the function that stops them (a run under way finishes on its own thread).
    """
    scheduler = BackgroundScheduler(timezone=UTC, executors={"default": _DaemonExecutor()})
    for job in jobs:
        scheduler.add_job(
            job.run,
            "interval",
            seconds=job.every,
            id=job.name,
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),
            misfire_grace_time=None,
        )
    scheduler.start()
    return lambda: scheduler.shutdown(wait=False)
