"""SqlStore's App Home viewers: who opened the Home tab when, and the repo each filters on."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from bot.models import HomeViewer
from bot.store.plumbing import StoreRows
from bot.store.rows import utc_now
from bot.store.schema import home_views


class HomeViewRows(StoreRows):
    """The App Home half of SqlStore (mixed into it): one row per user who opened it."""

    def open_home(self, user: str) -> HomeViewer:
        """Record that ``user`` opened the App Home now; their viewer row, repo filter kept."""
        values: dict[str, object] = {"user_id": user, "opened_at": utc_now()}
        with self._write() as conn:
            row = conn.execute(self._upsert(home_views, ("user_id",), values).returning(home_views)).one()
        return HomeViewer(row.user_id, row.opened_at, row.repo_filter)

    def set_home_filter(self, user: str, repo: str | None) -> HomeViewer:
        """Remember the repo ``user`` filters their App Home on (None: every repo)."""
        values: dict[str, object] = {"user_id": user, "opened_at": utc_now(), "repo_filter": repo}
        with self._write() as conn:
            row = conn.execute(self._upsert(home_views, ("user_id",), values).returning(home_views)).one()
        return HomeViewer(row.user_id, row.opened_at, row.repo_filter)

    def home_viewers(self, opened_since: datetime) -> list[HomeViewer]:
        """Who opened the App Home at or after ``opened_since``, most recent first."""
        query = (
            select(home_views)
            .where(home_views.c.opened_at >= opened_since)
            .order_by(home_views.c.opened_at.desc())
        )
        with self._read() as conn:
            return [HomeViewer(r.user_id, r.opened_at, r.repo_filter) for r in conn.execute(query)]
