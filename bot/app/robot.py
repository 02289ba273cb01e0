"""`robot run` built once, in dependency order: store and GitHub, Slack notifier, core, Bolt app, poller."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_bolt import App, BoltContext, BoltResponse, Respond
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.error import BoltUnhandledRequestError
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from bot.app.guard import GuardedSocketModeHandler, PayloadGuard, unhandled
from bot.config import Settings
from bot.daemon_pool import DaemonThreadPool
from bot.errors import BotError, StoreError
from bot.poller import Poller
from bot.scheduling import Job, start_jobs
from bot.slack.announcer import SlackAnnouncer
from bot.slack.chatops import ChatOps
from bot.slack.directory import UserGroups
from bot.slack.notifier import SlackNotifier
from bot.slack.outbox import SlackOutbox
from bot.wiring import Core, CoreStore, assemble_core, lay_foundation
from handlers.answer import Answerer
from handlers.routes import register

log = logging.getLogger(__name__)

# Of `deploys.stop_timeout`, at most this goes to closing the socket (Slack's SDK waits for
# the envelope being handled) and this much is kept to flush Slack after the deploys ended.
CLOSE_SOCKET_SECONDS = 0.5
FLUSH_SLACK_SECONDS = 2.0
LISTENER_THREADS = 5
ENVELOPE_THREADS = 10
PRUNE_EVERY_SECONDS = 24 * 3600.0


@dataclass
class Robot:
    """Everything `robot run` runs; start() connects, stop() winds down within `deploys.stop_timeout`."""

    core: Core
    app: App
    handler: SocketModeHandler
    outbox: SlackOutbox
    notifier: SlackNotifier
    answerer: Answerer
    poller: Poller
    stop_jobs: Callable[[], None] | None = None

    def start(self) -> None:
        self.outbox.start()
        self.notifier.start()
        self.core.service.start()
        self.handler.connect()  # type: ignore[no-untyped-call]
        settings = self.core.settings
        jobs = [Job("merge-poller", self.poller.poll_once, settings.github.poll_interval)]
        if settings.state.keep_logs_days is not None:
            jobs.append(Job("prune-logs", self._prune_logs, PRUNE_EVERY_SECONDS))
        self.stop_jobs = start_jobs(*jobs)

    def _prune_logs(self) -> None:
        """`state.keep_logs_days`: older deploys lose their logs, keep their history."""
        days = self.core.settings.state.keep_logs_days or 0
        try:
            pruned = self.core.store.prune_logs(datetime.now(UTC) - timedelta(days=days))
        except StoreError as exc:
            log.warning("pruning old logs failed, will retry tomorrow: %s", exc)
            return
        log.info("pruned the logs of %d deploy(s) older than %g days", pruned, days)

    def stop(self) -> None:
        """Stop taking commands and polling, cancel running deploys and record them cancelled
        (store, GitHub, Slack root), flush Slack: all within ``deploys.stop_timeout`` s."""
        timeout = self.core.settings.deploys.stop_timeout
        deadline = time.monotonic() + timeout
        if self.stop_jobs is not None:
            self.stop_jobs()
        self.handler.client.auto_reconnect_enabled = False
        _within(self.handler.close, CLOSE_SOCKET_SECONDS, "slack-socket-close")
        flush = min(FLUSH_SLACK_SECONDS, timeout / 4)
        self.core.service.stop(max(0.0, deadline - flush - time.monotonic()))
        self.notifier.stop()
        self.outbox.stop(max(0.0, deadline - time.monotonic()))
        self.answerer.close()
        self.core.close()


def build_robot(settings: Settings, environ: Mapping[str, str], store: CoreStore | None = None) -> Robot:
    """Wire store, GitHub, Slack client, outbox, notifier, core, Bolt app, Socket Mode handler and poller.

    ``store``, when given, is the core's one store instead of the SqlStore opened from ``state.url``
    (tests wrap the real one to inject faults); the caller closes it.
    """
    slack = settings.slack
    if not slack.bot_token or not slack.app_token:
        raise BotError("slack.bot_token and slack.app_token are needed by `robot run`")
    client = WebClient(
        token=slack.bot_token,
        base_url=slack.api_url,
        retry_handlers=[
            RateLimitErrorRetryHandler(max_retry_count=2),
            ConnectionErrorRetryHandler(max_retry_count=2),
        ],
    )
    outbox = SlackOutbox(
        client, message_interval=slack.message_interval, channel_interval=slack.channel_interval
    )
    base = lay_foundation(settings, environ, store)
    notifier = SlackNotifier(outbox, client, base.store, base.github.commit_url, base.step_labels)
    core = assemble_core(base, environ, notifier, members_of=UserGroups(client).members)
    chatops = ChatOps(core.service, notifier.current_step)
    answerer = Answerer()
    # Unhandled payloads go to on_error, which acks them (else Slack shows the user its own error).
    # Daemon listener threads: one still waiting on GitHub must not hold the exit at shutdown.
    app = App(
        client=client,
        name="deploy-robot",
        raise_error_for_unhandled_request=True,
        listener_executor=DaemonThreadPool(LISTENER_THREADS, "listener"),
    )
    _install(app, chatops, answerer)
    handler = GuardedSocketModeHandler(app, slack.app_token, ping_interval=slack.ping_interval)
    # The SDK's own pool (its default size) is joined at exit; envelopes run Bolt, and so listeners.
    handler.client.message_workers = DaemonThreadPool(ENVELOPE_THREADS, "slack-envelope")  # type: ignore[assignment]
    announcer = SlackAnnouncer(outbox, {repo: settings.channel(repo) for repo in settings.repos})
    poller = Poller(settings, core.github, core.store, core.service, announcer)
    return Robot(core, app, handler, outbox, notifier, answerer, poller)


def _install(app: App, chatops: ChatOps, answerer: Answerer) -> None:
    def inject(context: BoltContext, next: Callable[[], None]) -> None:
        context["chatops"] = chatops
        context["answerer"] = answerer
        next()

    def on_error(error: Exception, body: Any, respond: Respond | None) -> BoltResponse | None:
        if isinstance(error, BoltUnhandledRequestError):
            # A button of an older robot, or a malformed payload: ack it, else Slack shows the
            # user an error of its own, and say that nothing was done.
            return unhandled(body, respond)
        # Listeners catch BotError themselves; anything here is a robot bug.
        kind = body.get("type", "?") if isinstance(body, dict) else "?"
        log.error("listener failed on %s", kind, exc_info=error)
        return None

    app.use(PayloadGuard())
    app.use(inject)
    app.error(on_error)
    register(app)


def _within(call: Callable[[], object], seconds: float, name: str) -> None:
    """Run ``call`` on a daemon thread and wait at most ``seconds`` for it: shutdown goes on."""
    thread = threading.Thread(target=call, name=name, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        log.warning("%s took over %g s; going on without it", name, seconds)
