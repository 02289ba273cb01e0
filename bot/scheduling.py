"""The merge poller's clock: an APScheduler 3.x interval job (the only module importing it)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler


def start_polling(poll_once: Callable[[], object], interval: float) -> Callable[[], None]:
    """Run ``poll_once`` now and every ``interval`` s; never two at once, missed runs coalesced.

    Returns the function that stops it (a poll under way is left to finish on its own thread).
    """
    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.add_job(
        poll_once,
        "interval",
        seconds=interval,
        id="merge-poller",
        max_instances=1,
        coalesce=True,
        next_run_time=datetime.now(UTC),
        misfire_grace_time=None,
    )
    scheduler.start()
    return lambda: scheduler.shutdown(wait=False)
