"""The composition root of `robot run`: core + Slack (Bolt in Socket Mode) + merge poller."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from slack_bolt import App, BoltContext, BoltResponse, Respond
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.error import BoltUnhandledRequestError
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from bot.config import Settings
from bot.errors import BotError
from bot.github import GitHubGateway
from bot.poller import Poller
from bot.ports import StorePort
from bot.scheduling import start_polling
from bot.slack.announcer import SlackAnnouncer
from bot.slack.chatops import ChatOps
from bot.slack.directory import UserGroups
from bot.slack.notifier import SlackNotifier
from bot.slack.outbox import SlackOutbox
from bot.wiring import Core, build_core
from handlers.guard import GuardedSocketModeHandler, PayloadGuard, unhandled
from handlers.routes import register

log = logging.getLogger(__name__)

# On SIGTERM the robot must be gone within 10 s: this much goes to stopping deploys cleanly.
STOP_DEPLOYS_SECONDS = 6.0
FLUSH_SLACK_SECONDS = 2.0


@dataclass
class Robot:
    """Everything `robot run` runs; start() connects, stop() winds down within about 9 s."""

    core: Core
    app: App
    handler: SocketModeHandler
    outbox: SlackOutbox
    notifier: SlackNotifier
    chatops: ChatOps
    poller: Poller
    stop_polling: Callable[[], None] | None = None

    def start(self) -> None:
        self.outbox.start()
        self.notifier.start()
        self.core.service.start()
        self.handler.connect()  # type: ignore[no-untyped-call]
        self.stop_polling = start_polling(self.poller.poll_once, self.core.settings.github.poll_interval)

    def stop(self) -> None:
        # Stop taking commands and polling first, then let running deploys end as cancelled,
        # then flush what Slack still has to show.
        if self.stop_polling is not None:
            self.stop_polling()
        self.handler.client.auto_reconnect_enabled = False
        self.handler.close()  # type: ignore[no-untyped-call]
        self.core.service.stop(STOP_DEPLOYS_SECONDS)
        self.notifier.stop()
        self.outbox.stop(FLUSH_SLACK_SECONDS)
        self.chatops.close()
        self.core.close()


def build_robot(settings: Settings, environ: Mapping[str, str], store: StorePort | None = None) -> Robot:
    """Wire core, Slack client, outbox, notifier, Bolt app and Socket Mode handler.

    ``store`` is passed to build_core (the deploy path's store port; tests wrap the real one).
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
    groups = UserGroups(client)
    notifier: SlackNotifier | None = None

    def reporter_for(deploy_store: StorePort, github: GitHubGateway) -> SlackNotifier:
        nonlocal notifier
        # Step labels come from the pipeline, built next; they are only asked for later.
        notifier = SlackNotifier(
            outbox, client, deploy_store, github.commit_url, lambda d: core.pipeline.step_labels(d)
        )
        return notifier

    core = build_core(settings, environ, reporter_for, members_of=groups.members, store=store)
    assert notifier is not None  # build_core called reporter_for
    chatops = ChatOps(core.service, notifier.current_step)
    # Unhandled payloads go to on_error, which acks them (else Slack shows the user its own error).
    app = App(client=client, name="deploy-robot", raise_error_for_unhandled_request=True)
    _install(app, chatops)
    handler = GuardedSocketModeHandler(app, slack.app_token, ping_interval=slack.ping_interval)
    announcer = SlackAnnouncer(outbox, {repo: settings.channel(repo) for repo in settings.repos})
    poller = Poller(settings, core.github, core.store, core.service, announcer)
    return Robot(core, app, handler, outbox, notifier, chatops, poller)


def _install(app: App, chatops: ChatOps) -> None:
    def inject(context: BoltContext, next: Callable[[], None]) -> None:
        context["chatops"] = chatops
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
