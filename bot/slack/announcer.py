"""Posts merge announcements (with Deploy buttons), poller warnings and expired locks to Slack."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from bot.errors import BotError
from bot.models import AnnouncementRef, Lock, MergeNews
from bot.slack.blocks.announcements import merge_announcement
from bot.slack.outbox import MessageRef, SlackOutbox
from bot.slack.text import escape, fmt_duration, mention, truncate
from bot.text import one_line

log = logging.getLogger(__name__)

# How long the poller waits for Slack to accept an announcement before trying next poll.
POST_WAIT_SECONDS = 30.0


class SlackAnnouncer:
    """The poller's MergeAnnouncer, writing through the shared outbox."""

    def __init__(
        self, outbox: SlackOutbox, channels: Mapping[str, str], post_wait: float = POST_WAIT_SECONDS
    ) -> None:
        self._outbox = outbox
        self._channels = channels  # repo → its channel, for warnings outside a thread
        self._post_wait = post_wait

    def announce(
        self, news: MergeNews, posted: Callable[[AnnouncementRef], None] | None = None
    ) -> AnnouncementRef | None:
        """Post the announcement ahead of every other write (someone waits for it); ``posted``
        is called on the outbox's thread once Slack took it."""
        text, blocks = merge_announcement(
            news.repo,
            news.pulls,
            news.sha,
            news.branch,
            news.ci_summary,
            news.environments,
            news.commit_url,
            notes=_notes(news),
        )
        on_posted = None
        if posted is not None:
            taken = posted

            def on_posted(ref: MessageRef) -> None:
                taken(AnnouncementRef(ref.channel, ref.ts or ""))

        ref = self._outbox.post(news.channel, text, blocks, on_posted=on_posted, urgent=True)
        ts = ref.wait(self._post_wait)
        if ref.failed:
            # Slack refused it for good: raising gives the head's claim back, so the next poll
            # announces it again.
            raise BotError(f"Slack did not accept the announcement for {news.repo} in {news.channel}")
        if ts is None:
            # Still queued behind Slack's pacing: it will go out, so the claim stays (a retry
            # would announce the merge twice); only its thread is not known yet.
            log.warning("announcement for %s still queued after %g s", news.repo, self._post_wait)
            return None
        return AnnouncementRef(ref.channel, ts)

    def announce_problem(self, repo: str, text: str, thread: AnnouncementRef | None = None) -> None:
        parent: MessageRef | None = None
        channel = self._channels[repo]
        if thread is not None:
            parent = self._outbox.adopt(thread.channel, thread.ts)
            channel = thread.channel
        self._outbox.post(channel, "⚠️ " + escape(text), thread=parent)

    def lock_expired(self, lock: Lock) -> None:
        """The LockNotifier: one message in the repo's channel (queued in the outbox, never raises)."""
        channel = self._channels.get(lock.repo)
        if channel is None:
            log.info(
                "%s %s: lock expired; the repo is no longer configured, so nobody is told",
                lock.repo,
                lock.env,
            )
            return
        self._outbox.post(channel, lock_expired_text(lock))


def lock_expired_text(lock: Lock) -> str:
    """`🔓 acme/api production unlocked: <@U…>'s lock for 2 h expired (release freeze)`."""
    lasted = lock.duration_seconds
    span = f" for {fmt_duration(lasted)}" if lasted is not None else ""
    why = f" ({escape(truncate(one_line(lock.reason), 200))})" if lock.reason else ""
    return (
        f"🔓 {escape(lock.repo)} {escape(lock.env)} unlocked: "
        f"{mention(lock.locker)}'s lock{span} expired{why}"
    )


def _notes(news: MergeNews) -> list[str]:
    notes = []
    if news.forced:
        notes.append(f"⚠️ Force-pushed: {news.previous_sha[:7]} is no longer on {news.branch}.")
    if news.direct_pushes and news.pulls:
        titles = ", ".join(c.title or c.sha[:7] for c in news.direct_pushes[:5])
        notes.append(f"Also pushed directly (no pull request): {titles}")
    if news.truncated:
        notes.append(f"{news.total_commits} commits in all; the newest are listed.")
    if news.auto_deploy_env:
        notes.append(f"Auto-deploying to {news.auto_deploy_env} (after CI is green).")
    return notes
