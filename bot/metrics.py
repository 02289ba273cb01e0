"""Prometheus `/metrics` and `/healthz` of `robot run` (the only module importing prometheus_client).

Each robot has its own CollectorRegistry, so several robots (tests) live in one process. Counters
and histograms move as things happen; what the store and the outbox hold (queues, running
deploys, backlog) and the ages below are read at scrape time.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bot.errors import BotError
from bot.models import Deploy, DeployState, GateResult, StepResult, TaskEvent
from bot.text import one_line

log = logging.getLogger(__name__)

PREFIX = "deploy_robot"
HEARTBEAT_SECONDS = 5.0  # how often this process asks the store whether it answers
STALE_AFTER = 3  # heartbeats (or poll intervals) missed before /healthz says 503
ACTIVE_LIMIT = 10_000  # queued + running deploys read per scrape; far beyond any real queue
SERVE_POLL_SECONDS = 0.2  # how quickly the HTTP thread notices stop()

DEPLOY_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
STEP_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
ACK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0)
POLL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

Clock = Callable[[], float]


class PrometheusMetrics:
    """The Metrics port on a per-robot registry, plus the times /healthz judges."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.registry = CollectorRegistry(auto_describe=False)  # collected at every scrape
        # The series per repo + environment (thousands of samples with 50 repos) change only when
        # a deploy or a step ends: their text is rendered again after that, not at every scrape.
        self._deploy_series = _RenderedOnChange()
        self._step_series = _RenderedOnChange()
        self._clock = clock
        self.started_at = clock()
        self.heartbeat_at: float | None = None  # the store last answered this process's heartbeat
        self.last_poll_at: float | None = None  # a poll cycle last ended
        self.leading_since: float | None = None  # this process runs the poller (None: it does not)
        d = self._deploy_series.registry
        self.deploys = Counter(
            f"{PREFIX}_deploys",
            "Deploys that ended, by final state",
            ["repo", "environment", "state"],
            registry=d,
        )
        self.deploy_seconds = Histogram(
            f"{PREFIX}_deploy_duration_seconds",
            "Start of the first step (or gate) to the final state, per deploy",
            ["repo", "environment"],
            buckets=DEPLOY_BUCKETS,
            registry=d,
        )
        self.step_seconds = Histogram(
            f"{PREFIX}_step_duration_seconds",
            "Wall time of one deploy step",
            ["repo", "environment"],
            buckets=STEP_BUCKETS,
            registry=self._step_series.registry,
        )
        r = self.registry
        self.ack_seconds = Histogram(
            f"{PREFIX}_slack_ack_seconds",
            "Listener receiving a command or click to its ack sent over Socket Mode",
            buckets=ACK_BUCKETS,
            registry=r,
        )
        self.slack_calls = Counter(
            f"{PREFIX}_slack_api_calls",
            "Slack Web API calls by method and outcome",
            ["method", "outcome"],
            registry=r,
        )
        self.slack_429s = Counter(
            f"{PREFIX}_slack_rate_limited", "Slack answers with HTTP 429, by method", ["method"], registry=r
        )
        self.github_requests = Counter(
            f"{PREFIX}_github_requests",
            "GitHub calls by kind and status (2xx: succeeded; unreachable: no answer)",
            ["kind", "status"],
            registry=r,
        )
        self.github_remaining = Gauge(
            f"{PREFIX}_github_rate_limit_remaining",
            "GitHub rate-limit units left, from the last answer's X-RateLimit-Remaining",
            registry=r,
        )
        self.poll_seconds = Histogram(
            f"{PREFIX}_poll_cycle_seconds",
            "Wall time of one merge-poll cycle",
            buckets=POLL_BUCKETS,
            registry=r,
        )
        self.poll_not_modified = Gauge(
            f"{PREFIX}_poll_not_modified_ratio",
            "Share of the last poll cycle's branch-head requests GitHub answered 304",
            registry=r,
        )

    # ---- the Metrics port ------------------------------------------------------------

    def slack_call(self, method: str, outcome: str) -> None:
        self.slack_calls.labels(method, outcome).inc()

    def slack_rate_limited(self, method: str) -> None:
        self.slack_429s.labels(method).inc()

    def ack_sent(self, seconds: float) -> None:
        self.ack_seconds.observe(seconds)

    def github_response(self, kind: str, status: str, remaining: int | None) -> None:
        self.github_requests.labels(kind, status).inc()
        if remaining is not None:
            self.github_remaining.set(remaining)

    def poll_cycle(self, seconds: float, heads: int, not_modified: int) -> None:
        self.poll_seconds.observe(seconds)
        if heads:
            self.poll_not_modified.set(not_modified / heads)
        self.last_poll_at = self._clock()

    # ---- what the robot tells it besides --------------------------------------------

    def deploy_ended(self, deploy: Deploy) -> None:
        self.deploys.labels(deploy.repo, deploy.env, deploy.state.value).inc()
        seconds = deploy.duration_seconds
        if seconds is not None:
            self.deploy_seconds.labels(deploy.repo, deploy.env).observe(seconds)
        self._deploy_series.changed()

    def step_ended(self, deploy: Deploy, seconds: float) -> None:
        self.step_seconds.labels(deploy.repo, deploy.env).observe(seconds)
        self._step_series.changed()

    def exposition(self) -> bytes:
        """The text /metrics serves: the live registry, then the per-deploy series."""
        return generate_latest(self.registry) + self._deploy_series.text() + self._step_series.text()

    def beat(self) -> None:
        """The store answered this process's heartbeat."""
        self.heartbeat_at = self._clock()

    def lead_poller(self, leading: bool) -> None:
        """This process holds the merge poller lease (it polls GitHub), or gave it up or lost it."""
        self.leading_since = self._clock() if leading else None

    def heartbeat_age(self) -> float:
        """Seconds since the store last answered a heartbeat (since start, before the first)."""
        return self._clock() - (self.heartbeat_at if self.heartbeat_at is not None else self.started_at)

    def poll_age(self) -> float | None:
        """Seconds since the last poll cycle ended (or leading began); None while not leading."""
        since = self.leading_since
        if since is None:
            return None
        last = self.last_poll_at
        return self._clock() - (last if last is not None and last >= since else since)


class _RenderedOnChange:
    """A registry whose exposition text is rendered again only after ``changed()``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._version = 0
        self._rendered_version = -1
        self._text = b""
        self._lock = threading.Lock()

    def changed(self) -> None:
        self._version += 1  # a lost race still leaves it unequal to the rendered version

    def text(self) -> bytes:
        with self._lock:
            version = self._version
            if version != self._rendered_version:
                # A change during the render bumps the version again: the next scrape renders.
                self._text = generate_latest(self.registry)
                self._rendered_version = version
            return self._text


class MetricsObserver:
    """DeployObserver that counts and times deploys and steps; shows nothing."""

    _REMEMBERED = 10_000  # deploys whose final state was counted (a final state may be re-announced)

    def __init__(self, metrics: PrometheusMetrics, clock: Clock = time.monotonic) -> None:
        self._metrics = metrics
        self._clock = clock
        self._lock = threading.Lock()
        self._counted: OrderedDict[int, None] = OrderedDict()
        self._steps: dict[tuple[int, int], float] = {}

    def deploy_changed(self, deploy: Deploy) -> None:
        if not deploy.state.is_final:
            return
        with self._lock:
            if deploy.id in self._counted:
                return
            self._counted[deploy.id] = None
            if len(self._counted) > self._REMEMBERED:
                self._counted.popitem(last=False)
            for key in [k for k in self._steps if k[0] == deploy.id]:
                del self._steps[key]
        self._metrics.deploy_ended(deploy)

    def gate_waiting(self, deploy: Deploy, gate: GateResult) -> None:
        pass

    def step_started(self, deploy: Deploy, index: int, total: int, label: str) -> None:
        with self._lock:
            self._steps[(deploy.id, index)] = self._clock()

    def step_output(self, deploy: Deploy, line: str) -> None:
        pass

    def task_event(self, deploy: Deploy, event: TaskEvent) -> None:
        pass

    def step_finished(self, deploy: Deploy, index: int, result: StepResult) -> None:
        with self._lock:
            began = self._steps.pop((deploy.id, index), None)
        if began is not None:
            self._metrics.step_ended(deploy, self._clock() - began)

    def log_url(self, deploy: Deploy) -> str | None:
        return None


# ---- health ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HealthReport:
    """What /healthz answers: every check by name, and a line per failing one."""

    checks: dict[str, bool]
    reasons: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.reasons

    def body(self) -> bytes:
        status = "ok" if self.ok else "unhealthy"
        return json.dumps({"status": status, "checks": self.checks, "reasons": self.reasons}).encode()


class Health:
    """Judges `robot run`: Socket Mode up, the store answering, heartbeat fresh, polls on time."""

    def __init__(
        self,
        metrics: PrometheusMetrics,
        socket_connected: Callable[[], bool],
        store_probe: Callable[[], object],
        poll_interval: float,
    ) -> None:
        self._metrics = metrics
        self._socket_connected = socket_connected
        self._store_probe = store_probe
        self._poll_interval = poll_interval

    def check(self) -> HealthReport:
        checks: dict[str, bool] = {}
        reasons: list[str] = []

        def judge(name: str, ok: bool, reason: str) -> None:
            checks[name] = ok
            if not ok:
                reasons.append(reason)

        judge("slack_socket", self._socket_connected(), "the Slack Socket Mode connection is down")
        try:
            self._store_probe()
            judge("store", True, "")
        except Exception as exc:
            why = one_line(str(exc) or type(exc).__name__, 200)
            judge("store", False, f"the store does not answer: {why}")
        age = self._metrics.heartbeat_age()
        stale = STALE_AFTER * HEARTBEAT_SECONDS
        judge("heartbeat", age <= stale, f"the store last answered a heartbeat {age:.0f} s ago (> {stale:g})")
        poll_age = self._metrics.poll_age()
        if poll_age is not None:
            late = STALE_AFTER * self._poll_interval
            judge("poller", poll_age <= late, f"the last poll cycle ended {poll_age:.0f} s ago (> {late:g})")
        return HealthReport(checks, reasons)


# ---- scrape-time values ----------------------------------------------------------------


class StateCollector(Collector):
    """What is read at scrape time: active deploys by state, outbox backlog, ages, health."""

    def __init__(
        self,
        metrics: PrometheusMetrics,
        health: Health,
        environments: Sequence[tuple[str, str]],
        active: Callable[[], Sequence[Deploy]],
        outbox_backlog: Callable[[], int],
        poll_interval: float,
    ) -> None:
        self._metrics = metrics
        self._health = health
        self._environments = list(environments)
        self._active = active
        self._outbox_backlog = outbox_backlog
        self._poll_interval = poll_interval

    def collect(self) -> Iterator[Metric]:
        labels = ["repo", "environment"]
        queued = GaugeMetricFamily(f"{PREFIX}_queued_deploys", "Deploys waiting", labels=labels)
        running = GaugeMetricFamily(f"{PREFIX}_running_deploys", "Deploys running", labels=labels)
        waiting = GaugeMetricFamily(
            f"{PREFIX}_waiting_deploys", "Deploys waiting for CI (their environment held)", labels=labels
        )
        awaiting = GaugeMetricFamily(
            f"{PREFIX}_awaiting_approval_deploys", "Deploys awaiting approval", labels=labels
        )
        counts: dict[tuple[str, str, DeployState], int] = {}
        try:
            for deploy in self._active():
                key = (deploy.repo, deploy.env, deploy.state)
                counts[key] = counts.get(key, 0) + 1
        except Exception:  # the store is down: /healthz says so; the scrape still answers
            log.debug("scrape: active deploys unreadable", exc_info=True)
        else:
            known = dict.fromkeys(self._environments)
            known.update(dict.fromkeys((repo, env) for repo, env, _ in counts))
            for repo, env in known:
                queued.add_metric([repo, env], counts.get((repo, env, DeployState.QUEUED), 0))
                running.add_metric([repo, env], counts.get((repo, env, DeployState.RUNNING), 0))
                waiting.add_metric([repo, env], counts.get((repo, env, DeployState.WAITING), 0))
                awaiting.add_metric([repo, env], counts.get((repo, env, DeployState.AWAITING_APPROVAL), 0))
        yield queued
        yield running
        yield waiting
        yield awaiting
        yield GaugeMetricFamily(
            f"{PREFIX}_slack_outbox_backlog",
            "Slack writes waiting in the outbox",
            value=self._outbox_backlog(),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_store_heartbeat_age_seconds",
            f"Seconds since the store last answered this process (asked every {HEARTBEAT_SECONDS:g} s)",
            value=self._metrics.heartbeat_age(),
        )
        poll_age = self._metrics.poll_age()
        yield GaugeMetricFamily(
            f"{PREFIX}_poll_leader", "1 while this process runs the merge poller", value=poll_age is not None
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_poll_interval_seconds",
            "The configured github.poll_interval",
            value=self._poll_interval,
        )
        if poll_age is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_last_poll_age_seconds",
                "Seconds since this process's last poll cycle ended (only while it leads the poller)",
                value=poll_age,
            )
        yield GaugeMetricFamily(
            f"{PREFIX}_healthy", "1 when /healthz would answer 200", value=self._health.check().ok
        )


# ---- the HTTP endpoint -----------------------------------------------------------------


class MetricsServer:
    """Serves /metrics and /healthz on its own thread, and runs the store heartbeat on another."""

    def __init__(
        self,
        host: str,
        port: int,
        metrics: PrometheusMetrics,
        health: Health,
        store_probe: Callable[[], object],
    ) -> None:
        self._address = (host, port)
        self._health = health
        self._metrics = metrics
        self._store_probe = store_probe
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    @property
    def port(self) -> int:
        """The port listened on (the configured one, or the one picked for port 0)."""
        if self._server is None:
            return self._address[1]
        return int(self._server.server_address[1])

    def start(self) -> None:
        host, port = self._address
        try:
            server = ThreadingHTTPServer(self._address, _handler(self._metrics.exposition, self._health))
        except OSError as exc:
            raise BotError(f"metrics: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        server.daemon_threads = True
        self._server = server
        self._stopping.clear()
        self._threads = [
            threading.Thread(
                target=server.serve_forever, args=(SERVE_POLL_SECONDS,), name="metrics-http", daemon=True
            ),
            threading.Thread(target=self._heartbeat, name="store-heartbeat", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        log.info("metrics on http://%s:%d/metrics and /healthz", host, self.port)

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for thread in self._threads:
            thread.join(1.0)
        self._threads = []

    def _heartbeat(self) -> None:
        while not self._stopping.is_set():
            try:
                self._store_probe()
            except Exception as exc:
                log.warning("store heartbeat failed: %s", one_line(str(exc) or type(exc).__name__, 200))
            else:
                self._metrics.beat()
            self._stopping.wait(HEARTBEAT_SECONDS)


def _handler(exposition: Callable[[], bytes], health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, exposition())
            elif path == "/healthz":
                report = health.check()
                self._send(200 if report.ok else 503, "application/json", report.body())
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics or /healthz\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("metrics: " + format, *args)

    return Handler
