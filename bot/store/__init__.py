"""The store: deploys, queue, locks, logs and branch heads in SQLite or PostgreSQL."""

from bot.store.sql_store import SqlStore

__all__ = ["SqlStore"]
