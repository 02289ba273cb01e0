"""`robot run` built once, in dependency order: store and GitHub, Slack notifier, core, Bolt app, poller."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from slack_bolt import App, BoltContext, BoltResponse, Respond
from slack_bolt.error import BoltUnhandledRequestError

from bot.app.guard import GuardedSocketModeHandler, PayloadGuard, unhandled
from bot.approvals import approval_view
from bot.config import MetricsSettings, Settings
from bot.daemon_pool import DaemonThreadPool
from bot.deploys import DeployService
from bot.errors import BotError, StoreError
from bot.home import Dashboard
from bot.lock_expiry import TICK_SECONDS, LockExpiry
from bot.metrics import (
    ACTIVE_LIMIT,
    Health,
    MetricsObserver,
    MetricsServer,
    PrometheusMetrics,
    StateCollector,
)
from bot.models import Deploy, DeployState, Lock, ProcessKind
from bot.observers import FanOutObserver
from bot.poller import Poller, PollLeader
from bot.ports import NO_METRICS, DeployObserver, Metrics
from bot.scheduling import Job, start_jobs
from bot.slack.announcer import SlackAnnouncer
from bot.slack.chatops import ChatOps
from bot.slack.client import build_web_client
from bot.slack.directory import UserGroups
from bot.slack.home import HomeOps, HomeRefresher
from bot.slack.notifier import SlackNotifier
from bot.slack.outbox import SlackOutbox
from bot.stats import DoraStats
from bot.wiring import Core, CoreStore, assemble_core, lay_foundation
from handlers.answer import Answerer
from handlers.routes import register

log = logging.getLogger(__name__)

# Of `deploys.stop_timeout`, at most this (and a third of it) goes to acking the envelopes Slack
# already sent before the socket closes, at most this to closing it, and this much is kept to
# flush Slack after the deploys ended.
DRAIN_SOCKET_SECONDS = 3.0
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
    handler: GuardedSocketModeHandler
    outbox: SlackOutbox
    notifier: SlackNotifier
    answerer: Answerer
    poller: Poller
    stop_jobs: Callable[[], None] | None = None
    poll_leader: PollLeader | None = None
    metrics: PrometheusMetrics | None = None
    metrics_server: MetricsServer | None = None
    lock_expiry: LockExpiry | None = None

    def start(self) -> None:
        if self.metrics_server is not None:
            self.metrics_server.start()  # first: a port in use stops the robot before it connects
        self.outbox.start()
        self.notifier.start()
        self.core.service.start()
        self.handler.connect()  # type: ignore[no-untyped-call]
        settings = self.core.settings
        # Every robot runs the job; only the holder of the store's poller lease polls GitHub.
        self.poll_leader = PollLeader(
            self.poller,
            self.core.store,
            self.core.service.register(ProcessKind.RUN),
            settings.state.lease,
            settings.github.poll_interval,
        )
        tick = min(settings.state.heartbeat, settings.github.poll_interval)
        jobs = [Job("merge-poller", self._poll_tick, tick)]
        if settings.state.keep_logs_days is not None:
            jobs.append(Job("prune-logs", self._prune_logs, PRUNE_EVERY_SECONDS))
        if self.lock_expiry is not None:
            jobs.append(Job("lock-expiry", self.lock_expiry.tick, TICK_SECONDS))
        self.stop_jobs = start_jobs(*jobs)

    def _poll_tick(self) -> None:
        assert self.poll_leader is not None  # built by start() before the job runs
        was_leading = self.poll_leader.leading
        self.poll_leader.tick()
        if self.metrics is not None and self.poll_leader.leading != was_leading:
            self.metrics.lead_poller(self.poll_leader.leading)

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
        if self.metrics_server is not None:
            self.metrics_server.stop()
        if self.stop_jobs is not None:
            self.stop_jobs()
        if self.poll_leader is not None:
            self.poll_leader.resign()
        if self.metrics is not None:
            self.metrics.lead_poller(False)
        self.handler.client.auto_reconnect_enabled = False
        # The socket closes only once what Slack already sent it is acked, and the deploys stop
        # only once those commands are answered: closing first would leave a command sent just
        # before the stop without its ack, so its user without an answer.
        drain_by = time.monotonic() + min(DRAIN_SOCKET_SECONDS, timeout / 3)
        if not self.handler.drain(max(0.0, drain_by - time.monotonic())):
            log.warning("Slack envelopes still unacked after the drain; closing the socket anyway")
        self.handler.hang_up()
        _within(self.handler.close, CLOSE_SOCKET_SECONDS, "slack-socket-close")
        if not self.answerer.settle(max(0.0, drain_by - time.monotonic())):
            log.warning("some commands are still unanswered; stopping anyway")
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
    telemetry = PrometheusMetrics() if settings.metrics is not None else None
    metrics: Metrics = telemetry if telemetry is not None else NO_METRICS
    client = build_web_client(slack, metrics)
    outbox = SlackOutbox(
        client,
        message_interval=slack.message_interval,
        channel_interval=slack.channel_interval,
        update_interval=slack.update_interval,
    )
    base = lay_foundation(settings, environ, store, metrics)
    approvals = partial(approval_view, settings, base.store)
    notifier = SlackNotifier(
        outbox,
        client,
        base.store,
        base.github.commit_url,
        base.step_labels,
        approvals,
        changes=base.changes,
    )
    refresher = HomeRefresher(base.store, outbox, slack.home_interval)
    observers: list[DeployObserver] = [notifier, refresher]
    if telemetry is not None:
        observers.insert(0, MetricsObserver(telemetry))
    core = assemble_core(base, environ, FanOutObserver(observers), members_of=UserGroups(client).members)
    dora = DoraStats(settings, base.store)
    chatops = ChatOps(
        core.service,
        notifier.current_step,
        approvals,
        changes=base.changes,
        lock_changed=refresher.changed,
        stats=dora,
    )
    dashboard = Dashboard(
        settings, core.store, core.service, base.github.commit_url, notifier.current_step, stats=dora
    )
    home = HomeOps(core.service, dashboard, core.store, client, outbox, refresher, slack.home_interval)
    answerer = Answerer(metrics=metrics)
    # Unhandled payloads go to on_error, which acks them (else Slack shows the user its own error).
    # Daemon listener threads: one still waiting on GitHub must not hold the exit at shutdown.
    app = App(
        client=client,
        name="deploy-robot",
        raise_error_for_unhandled_request=True,
        listener_executor=DaemonThreadPool(LISTENER_THREADS, "listener"),
    )
    _install(app, chatops, answerer, home)
    handler = GuardedSocketModeHandler(app, slack.app_token, ping_interval=slack.ping_interval)
    # The SDK's own pool (its default size) is joined at exit; envelopes run Bolt, and so listeners.
    handler.client.message_workers = DaemonThreadPool(ENVELOPE_THREADS, "slack-envelope")  # type: ignore[assignment]
    announcer = SlackAnnouncer(outbox, {repo: settings.channel(repo) for repo in settings.repos})
    poller = Poller(settings, core.github, core.store, core.service, announcer, metrics=metrics)
    robot = Robot(core, app, handler, outbox, notifier, answerer, poller, metrics=telemetry)
    robot.lock_expiry = LockExpiry(core.store, announcer, partial(_lock_released, core.service, refresher))
    core.service.watch_locks(robot.lock_expiry.expect)
    if telemetry is not None and settings.metrics is not None:
        robot.metrics_server = _metrics_server(robot, telemetry, settings, settings.metrics)
    return robot


def _lock_released(service: DeployService, refresher: HomeRefresher, lock: Lock) -> None:
    """An expired lock this process released: what waited goes on, and viewers' Homes show it."""
    service.lock_released(lock)
    refresher.changed()


# A read of one primary key: the cheapest question that proves the store answers.
_PROBE_REPO = "health/probe"


def _metrics_server(
    robot: Robot, telemetry: PrometheusMetrics, settings: Settings, where: MetricsSettings
) -> MetricsServer:
    """/metrics and /healthz for ``robot``: its store, Socket Mode connection, outbox and poller."""
    store = robot.core.store

    def probe() -> object:
        return store.get_head(_PROBE_REPO)

    def active() -> list[Deploy]:
        return store.list_deploys(states=[DeployState.QUEUED, DeployState.RUNNING], limit=ACTIVE_LIMIT)

    interval = settings.github.poll_interval
    health = Health(telemetry, robot.handler.client.is_connected, probe, interval)
    environments = [(repo, env) for repo, rs in settings.repos.items() for env in rs.environments]
    telemetry.registry.register(
        StateCollector(telemetry, health, environments, active, lambda: robot.outbox.backlog, interval)
    )
    return MetricsServer(where.host, where.port, telemetry, health, probe)


def _install(app: App, chatops: ChatOps, answerer: Answerer, home: HomeOps) -> None:
    def inject(context: BoltContext, next: Callable[[], None]) -> None:
        context["chatops"] = chatops
        context["answerer"] = answerer
        context["home"] = home
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
