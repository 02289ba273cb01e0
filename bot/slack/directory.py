"""Slack user-group membership, cached: `deployers` and `force` may name groups (S…)."""

from __future__ import annotations

import logging
import threading
import time

from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError

log = logging.getLogger(__name__)

CACHE_SECONDS = 300.0


class UserGroups:
    """Members of a user group through usergroups.users.list, kept for CACHE_SECONDS."""

    def __init__(self, client: WebClient, ttl: float = CACHE_SECONDS) -> None:
        self._client = client
        self._ttl = ttl
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def members(self, group: str) -> frozenset[str]:
        """The group's user ids; on a Slack error, the last known members (or none)."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(group)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        try:
            answer = self._client.usergroups_users_list(usergroup=group)
        except SlackClientError as exc:
            log.warning("user group %s: membership unknown: %s", group, exc)
            return cached[1] if cached else frozenset()
        users = answer.get("users") or []
        members = frozenset(str(u) for u in users)
        with self._lock:
            self._cache[group] = (now, members)
        return members
