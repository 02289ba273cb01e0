"""Every Slack write the robot makes, paced, coalesced, prioritised and retried on one thread.

Why one thread: Slack allows about one new message a second per channel (chat.postMessage's
own limit) and, separately, about 50 edits a minute per workspace (chat.update is a Tier 3
method), and answers 429 with Retry-After beyond that. Deploy output can change a message
hundreds of times a second. So the two budgets are kept apart: posts (and uploads) are paced
per channel (one per ``channel_interval`` on average, in bursts of up to ``channel_burst``, as
Slack allows; a post nobody waits on leaves the last one of a burst to an urgent post), edits
workspace-wide (``update_interval``) and per message
(``message_interval``; a newer edit of one message replaces the one waiting, so the backlog of
edits is at most one per live message). Posts someone waits on (a deploy's root, a merge
announcement: ``urgent``) go first, then other posts, then edits. A 429 parks the budget it was
charged to until Retry-After has passed — the write is kept, never dropped, so a final state
always lands once Slack accepts writes again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

log = logging.getLogger(__name__)

Blocks = Sequence[dict[str, Any]]


@dataclass(eq=False)
class MessageRef:
    """A message the robot owns; ``ts`` is filled in once Slack has accepted the post."""

    channel: str
    ts: str | None = None
    thread: MessageRef | None = None
    failed: bool = False
    posted: threading.Event = field(default_factory=threading.Event)

    def wait(self, timeout: float) -> str | None:
        """The message's ts once posted (None on failure or timeout)."""
        self.posted.wait(timeout)
        return self.ts


@dataclass(eq=False)
class _Write:
    kind: str  # "post" | "update" | "upload" | "publish"
    ref: MessageRef
    text: str = ""
    blocks: Blocks = ()
    filename: str = ""
    content: str = ""
    on_posted: Callable[[MessageRef], None] | None = None
    tries: int = 0
    render: Callable[[], Mapping[str, Any]] | None = None  # "publish": the view, rendered when sent
    interval: float = 0.0  # "publish": the next one to that user waits this long
    urgent: bool = False  # "post": someone waits for it; goes before every other write

    @property
    def rank(self) -> int:
        """Lower goes first: urgent posts, other posts and uploads, then edits and publishes."""
        if self.kind == "post":
            return 0 if self.urgent else 1
        return 1 if self.kind == "upload" else 2


View = Mapping[str, Any]

# Slack takes short bursts of posts to one channel over its one a second: a few roots and
# announcements posted together go at once, while the average stays one per channel_interval.
CHANNEL_BURST = 3


class SlackOutbox:
    """Queues writes and performs them in order per message, within Slack's rate limits."""

    def __init__(
        self,
        client: WebClient,
        *,
        message_interval: float = 2.0,
        channel_interval: float = 1.0,
        update_interval: float = 0.0,
        channel_burst: int = CHANNEL_BURST,
        max_tries: int = 50,
    ) -> None:
        """``channel_interval``: between posts to one channel, on average over bursts of at most
        ``channel_burst``; ``update_interval``: between edits anywhere (the workspace's
        chat.update budget); ``message_interval``: between edits of one message."""
        self._client = client
        self._message_interval = message_interval
        self._channel_interval = channel_interval
        self._update_interval = update_interval
        self._updates_free_at = 0.0
        self._burst = max(1, channel_burst)
        self._buckets: dict[str, tuple[float, float]] = {}  # channel → posts in hand, as of when
        self._ids: dict[str, str] = {}  # a channel's name (#deploys) → its id, once Slack said it
        self._max_tries = max_tries
        self._queue: list[_Write] = []
        self._cond = threading.Condition()
        self._channel_free_at: dict[str, float] = {}
        self._message_free_at: dict[int, float] = {}
        self._homes: dict[str, MessageRef] = {}  # per user: paces their App Home publishes
        self._busy = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.writes = 0
        self.rate_limited = 0

    # --- API used by the notifier -----------------------------------------------------

    def post(
        self,
        channel: str,
        text: str,
        blocks: Blocks = (),
        thread: MessageRef | None = None,
        on_posted: Callable[[MessageRef], None] | None = None,
        urgent: bool = False,
    ) -> MessageRef:
        """A new message (in ``thread`` if given); returns at once with a ref to follow.

        ``urgent``: someone waits for it (a deploy's root, a merge announcement), so it goes
        before every write that is not urgent."""
        ref = MessageRef(channel, thread=thread)
        self._put(_Write("post", ref, text, blocks, on_posted=on_posted, urgent=urgent))
        return ref

    def adopt(self, channel: str, ts: str) -> MessageRef:
        """A ref to a message that already exists (posted earlier or by someone else)."""
        ref = MessageRef(channel, ts)
        ref.posted.set()
        return ref

    def resolve(self, ref: MessageRef, channel: str, ts: str) -> None:
        """``ref`` is a message someone else posted, now known: writes waiting on it may go."""
        with self._cond:
            ref.channel, ref.ts = channel, ts
            ref.posted.set()
            self._cond.notify_all()

    def abandon(self, ref: MessageRef) -> None:
        """``ref`` will never be known: writes waiting on it are dropped."""
        with self._cond:
            ref.failed = True
            ref.posted.set()
            self._cond.notify_all()

    def update(self, ref: MessageRef, text: str, blocks: Blocks = ()) -> None:
        """Replace the message's content; a pending update of the same message is superseded."""
        with self._cond:
            self._queue = [w for w in self._queue if not (w.kind == "update" and w.ref is ref)]
        self._put(_Write("update", ref, text, blocks))

    def upload(self, thread: MessageRef, filename: str, content: str, title: str) -> None:
        """Attach a text file to a thread."""
        self._put(_Write("upload", thread, title, filename=filename, content=content))

    def publish_view(self, user: str, render: Callable[[], View], interval: float) -> None:
        """Publish ``user``'s App Home, rendered when it is sent (so the latest state wins), at most
        once per ``interval`` s; a publish already waiting for that user covers this one."""
        with self._cond:
            ref = self._home(user)
            if any(w.kind == "publish" and w.ref is ref for w in self._queue):
                return
            self._queue.append(_Write("publish", ref, render=render, interval=interval))
            self._cond.notify_all()

    def view_published(self, user: str, interval: float) -> None:
        """``user``'s App Home was just published elsewhere (their own open or click): the next
        paced publish waits ``interval`` s from now."""
        with self._cond:
            ref = self._home(user)
            self._message_free_at[id(ref)] = max(
                self._message_free_at.get(id(ref), 0.0), time.monotonic() + interval
            )

    def _home(self, user: str) -> MessageRef:
        """The pacing ref of one user's App Home (called with the lock held); its ts is the user."""
        ref = self._homes.get(user)
        if ref is None:
            ref = self._homes[user] = MessageRef(f"home:{user}", user)
            ref.posted.set()
        return ref

    @property
    def backlog(self) -> int:
        """Writes waiting to be sent (a parked 429 retry included); read at scrape time."""
        return len(self._queue)  # one atomic read: a scrape never waits for the outbox's lock

    def flush(self, timeout: float) -> bool:
        """Wait until every queued write is done; False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.1))
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="slack-outbox", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Try to deliver what is queued within ``timeout``, then stop."""
        self.flush(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(1.0)

    # --- the worker -------------------------------------------------------------------

    def _put(self, write: _Write) -> None:
        with self._cond:
            self._queue.append(write)
            self._cond.notify_all()

    def _work(self) -> None:
        while True:
            with self._cond:
                write, wait = self._next_ready()
                while write is None:
                    if self._stopping:
                        return
                    self._cond.wait(wait)
                    write, wait = self._next_ready()
                self._queue.remove(write)
                self._busy = True
            try:
                self._perform(write)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _next_ready(self) -> tuple[_Write | None, float]:
        """The first write of the best rank that may go now, else how long until one might."""
        now = time.monotonic()
        soonest = 1.0
        best: _Write | None = None
        seen: set[int] = set()
        for write in self._queue:
            ref = write.ref
            # Writes to one message keep their order; a reply waits for its parent's ts.
            first = id(ref) not in seen
            seen.add(id(ref))
            if not first or (best is not None and write.rank >= best.rank):
                continue
            if write.kind != "post" and ref.ts is None and not ref.failed:
                continue
            target = ref.thread if write.kind == "post" and ref.thread else ref
            if target is not ref and target.ts is None and not target.failed:
                continue
            free_at = self._free_at(write)
            if free_at <= now:
                best = write
                if write.rank == 0:
                    break
            else:
                soonest = min(soonest, free_at - now)
        if best is not None:
            return best, 0.0
        return None, max(soonest, 0.01)

    def _free_at(self, write: _Write) -> float:
        """When ``write``'s budgets allow it: its channel's posts for posts and uploads; the
        workspace's edit budget and its message's for edits; its user's for publishes."""
        ref = write.ref
        if write.kind == "update":
            return max(self._updates_free_at, self._message_free_at.get(id(ref), 0.0))
        channel = self._ids.get(ref.channel, ref.channel)
        parked = self._channel_free_at.get(channel, 0.0)
        if write.kind == "publish":
            return max(parked, self._message_free_at.get(id(ref), 0.0))
        # An urgent post may take the last post in hand; any other leaves it for one.
        need = 1.0 if write.rank == 0 else min(2.0, float(self._burst))
        have = self._in_hand(channel, time.monotonic())
        if have >= need or self._channel_interval <= 0:
            return parked
        return max(parked, time.monotonic() + (need - have) * self._channel_interval)

    def _in_hand(self, channel: str, now: float) -> float:
        """Posts ``channel`` may take now: one more each ``channel_interval``, ``channel_burst`` at most."""
        if self._channel_interval <= 0:
            return float(self._burst)
        count, since = self._buckets.get(channel, (float(self._burst), now))
        return min(float(self._burst), count + (now - since) / self._channel_interval)

    def _spend(self, write: _Write, channel: str) -> None:
        """``write`` to ``channel`` was sent (or tried): take it from its budget, from when Slack
        answered."""
        now = time.monotonic()
        channel = self._ids.get(channel, channel)
        if write.kind == "update":
            self._updates_free_at = max(self._updates_free_at, now + self._update_interval)
        elif write.kind == "publish":
            free_at = now + self._channel_interval
            self._channel_free_at[channel] = max(self._channel_free_at.get(channel, 0.0), free_at)
        else:
            self._buckets[channel] = (max(0.0, self._in_hand(channel, now) - 1.0), now)

    def _park(self, write: _Write, seconds: float) -> None:
        """Nothing more on ``write``'s budget (an edit's: the workspace's; else its channel's)
        for ``seconds`` from now."""
        free_at = time.monotonic() + seconds
        if write.kind == "update":
            self._updates_free_at = max(self._updates_free_at, free_at)
        else:
            channel = self._ids.get(write.ref.channel, write.ref.channel)
            self._channel_free_at[channel] = max(self._channel_free_at.get(channel, 0.0), free_at)

    def _perform(self, write: _Write) -> None:
        ref = write.ref
        if ref.failed or (write.kind == "post" and ref.thread is not None and ref.thread.failed):
            self._give_up(write, "its message could not be posted")
            return
        # Slack answers a post with the channel's id: what it cost is the channel's either way.
        asked = ref.channel
        try:
            self._call(write)
        except SlackApiError as exc:
            self._failed(write, exc)
            return
        except SlackClientError as exc:  # connection trouble: try again shortly
            self._retry(write, 1.0, str(exc))
            return
        except OSError as exc:
            self._retry(write, 1.0, str(exc))
            return
        finally:
            # Pace from when Slack answered, not from when we asked: the client may have slept
            # through a Retry-After inside the call, and the next write must not follow at once.
            self._spend(write, asked)
        self.writes += 1
        if write.kind == "update":
            self._message_free_at[id(ref)] = time.monotonic() + self._message_interval
        elif write.kind == "publish":
            with self._cond:
                self._message_free_at[id(ref)] = max(
                    self._message_free_at.get(id(ref), 0.0), time.monotonic() + write.interval
                )

    def _call(self, write: _Write) -> None:
        ref = write.ref
        if write.kind == "post":
            thread_ts = ref.thread.ts if ref.thread else None
            response = self._client.chat_postMessage(
                channel=ref.channel,
                text=write.text,
                blocks=list(write.blocks) or None,
                thread_ts=thread_ts,
                unfurl_links=False,
                unfurl_media=False,
            )
            if str(response["channel"]) != ref.channel:
                self._ids[ref.channel] = str(response["channel"])  # one budget for both names
            ref.channel = str(response["channel"])
            ref.ts = str(response["ts"])
            ref.posted.set()
            self._message_free_at[id(ref)] = time.monotonic() + self._message_interval
            if write.on_posted is not None:
                write.on_posted(ref)
        elif write.kind == "update":
            self._client.chat_update(
                channel=ref.channel, ts=ref.ts or "", text=write.text, blocks=list(write.blocks)
            )
        elif write.kind == "publish":
            view = _rendered(write)
            if view is not None:
                self._client.views_publish(user_id=ref.ts or "", view=dict(view))
        else:
            self._client.files_upload_v2(
                channel=ref.channel,
                thread_ts=ref.ts,
                filename=write.filename,
                content=write.content,
                title=write.text,
            )

    def _failed(self, write: _Write, exc: SlackApiError) -> None:
        response = exc.response
        if response.status_code == 429 or response.get("error") == "ratelimited":
            self.rate_limited += 1
            retry_after = float(response.headers.get("Retry-After", response.headers.get("retry-after", 1)))
            self._park(write, retry_after)
            # Slack said when, not no: a rate limit costs no try, however long the storm lasts,
            # so a deploy's final state is never dropped for it.
            self._requeue(write)
        elif response.status_code >= 500 or response.get("error") in ("internal_error", "fatal_error"):
            self._retry(write, 1.0, str(response.get("error")))
        else:
            self._give_up(write, str(response.get("error")))

    def _retry(self, write: _Write, delay: float, why: str) -> None:
        write.tries += 1
        if write.tries >= self._max_tries:
            self._give_up(write, f"{why}, {write.tries} tries")
            return
        if delay:
            self._park(write, delay)
        self._requeue(write)

    def _requeue(self, write: _Write) -> None:
        with self._cond:
            self._queue.insert(0, write)

    def _give_up(self, write: _Write, why: str) -> None:
        log.error("Slack %s to %s dropped: %s", write.kind, write.ref.channel, why)
        if write.kind == "post":
            write.ref.failed = True
            write.ref.posted.set()


def _rendered(write: _Write) -> View | None:
    """A publish's view; None (logged, the publish dropped) when rendering failed: the outbox goes on."""
    try:
        return write.render() if write.render is not None else None
    except Exception:
        log.exception("App Home view for %s could not be rendered; not published", write.ref.ts)
        return None
