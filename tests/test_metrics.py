"""Operations: /metrics and /healthz of `robot run`, JSON logs, the systemd unit, alerts, --version."""

from __future__ import annotations

import configparser
import io
import json
import logging
import re
import shutil
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bot.config import LoggingSettings
from bot.logs import configure_logging, deploy_fields
from bot.models import DeployState
from bot.redact import MASK, Redactor
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.support.harness import ROOT, make_git_repo, run_cli, write_config
from tests.support.rig import CHANNEL, PY, WAIT, RobotRig, robot_environ, slack_section, step_command
from tests.support.wait import wait_for

UNIT = ROOT / "contrib" / "systemd" / "robot.service"
ALERTS = ROOT / "contrib" / "prometheus" / "alerts.yml"
LOOPBACK = {"host": "127.0.0.1", "port": 0}  # any free port


@pytest.fixture
def checkout(tmp_path: Path, github: FakeGitHub) -> Path:
    github.add_repo("acme/api")
    return make_git_repo(tmp_path / "checkout")


def repos(folder: Path) -> dict[str, Any]:
    envs = {
        "staging": {"folder": str(folder), "commands": [step_command(folder)]},
        "production": {"folder": str(folder), "commands": [step_command(folder), ["true"]]},
    }
    return {"acme/api": {"channel": CHANNEL, "environments": envs}}


def get(rig: RobotRig, path: str) -> tuple[int, str]:
    """GET ``path`` from the robot's metrics endpoint: status and body."""
    server = rig.robot.metrics_server
    assert server is not None, "metrics are off"
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def scrape(rig: RobotRig) -> dict[str, list[tuple[dict[str, str], float]]]:
    """/metrics parsed by prometheus_client's own parser: sample name → [(labels, value)]."""
    status, text = get(rig, "/metrics")
    assert status == 200
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when there are none)."""
    return sum(v for found, v in samples.get(name, []) if labels.items() <= found.items())


def health(rig: RobotRig) -> tuple[int, dict[str, Any]]:
    status, body = get(rig, "/healthz")
    return status, json.loads(body)


# ---- the endpoint over HTTP --------------------------------------------------------------


@pytest.mark.slow
def test_a_deploy_moves_the_deploy_slack_and_github_metrics(
    tmp_path: Path, github: FakeGitHub, slack: FakeSlack, checkout: Path
) -> None:
    with RobotRig(tmp_path, github, slack, repos(checkout), metrics=LOOPBACK) as rig:
        before = scrape(rig)
        assert value(before, "deploy_robot_deploys_total") == 0
        assert value(before, "deploy_robot_queued_deploys", repo="acme/api", environment="production") == 0
        # The only robot wins the poller lease on its first tick, just after start.
        wait_for(lambda: value(scrape(rig), "deploy_robot_poll_leader") == 1, WAIT, "the poller lease")

        assert "Deploy #1 queued" in rig.command("acme/api to production")
        rig.agree(1, DeployState.SUCCEEDED, "success")
        wait_for(lambda: value(scrape(rig), "deploy_robot_deploys_total") == 1, WAIT, "the deploy counted")
        # The next poll cycle (every 1 s here) sees the branch unchanged: a 304.
        wait_for(
            lambda: value(scrape(rig), "deploy_robot_poll_not_modified_ratio") == 1.0, WAIT, "a 304 poll"
        )
        after = scrape(rig)

    labels = {"repo": "acme/api", "environment": "production"}
    assert value(after, "deploy_robot_deploys_total", state="succeeded", **labels) == 1
    assert value(after, "deploy_robot_deploy_duration_seconds_count", **labels) == 1
    assert value(after, "deploy_robot_step_duration_seconds_count", **labels) == 2  # two steps
    assert value(after, "deploy_robot_running_deploys", **labels) == 0
    assert value(after, "deploy_robot_queued_deploys", **labels) == 0
    assert value(after, "deploy_robot_slack_ack_seconds_count") >= 1
    assert value(after, "deploy_robot_slack_api_calls_total", method="chat.postMessage", outcome="ok") >= 2
    assert value(after, "deploy_robot_slack_api_calls_total", method="chat.update", outcome="ok") >= 1
    assert value(after, "deploy_robot_github_requests_total", kind="create deployment", status="2xx") == 1
    assert value(after, "deploy_robot_github_requests_total", kind="read branch head", status="304") >= 1
    assert value(after, "deploy_robot_github_rate_limit_remaining") > 0
    assert value(after, "deploy_robot_poll_cycle_seconds_count") >= 2
    assert value(after, "deploy_robot_slack_outbox_backlog") >= 0
    assert 0 <= value(after, "deploy_robot_store_heartbeat_age_seconds") < 15
    assert value(after, "deploy_robot_healthy") == 1


@pytest.mark.slow
def test_slack_429s_are_counted(tmp_path: Path, github: FakeGitHub, slack: FakeSlack, checkout: Path) -> None:
    with RobotRig(tmp_path, github, slack, repos(checkout), metrics=LOOPBACK) as rig:
        slack.rate_limit("chat.postMessage", 1.5, 1)
        assert "Deploy #1 queued" in rig.command("acme/api to staging")
        rig.agree(1, DeployState.SUCCEEDED, "success")
        samples = scrape(rig)
    assert value(samples, "deploy_robot_slack_rate_limited_total", method="chat.postMessage") >= 1


@pytest.mark.slow
def test_health_turns_503_while_the_slack_socket_is_down_and_200_after_reconnecting(
    tmp_path: Path, github: FakeGitHub, slack: FakeSlack, checkout: Path
) -> None:
    with RobotRig(tmp_path, github, slack, repos(checkout), metrics=LOOPBACK) as rig:
        # Healthy, and leading the poller once its first tick took the lease.
        wait_for(lambda: health(rig)[1]["checks"].get("poller") is True, WAIT, "healthy, polling")
        body = health(rig)[1]
        assert body["status"] == "ok"
        assert body["checks"] == {"slack_socket": True, "store": True, "heartbeat": True, "poller": True}

        connections = slack.total_connections
        slack.refuse_connections(4.0)
        slack.hard_close_all()
        wait_for(lambda: health(rig)[0] == 503, WAIT, "503 while the socket is down")
        body = health(rig)[1]
        assert body["status"] == "unhealthy"
        assert body["checks"]["slack_socket"] is False
        assert body["checks"]["store"] is True
        assert body["reasons"] == ["the Slack Socket Mode connection is down"]
        assert value(scrape(rig), "deploy_robot_healthy") == 0

        slack.wait_connected(timeout=WAIT, total=connections + 1)
        wait_for(lambda: health(rig)[0] == 200, WAIT, "200 after reconnecting")


@pytest.mark.slow
def test_health_names_a_store_that_does_not_answer(
    tmp_path: Path, github: FakeGitHub, slack: FakeSlack, checkout: Path
) -> None:
    with RobotRig(tmp_path, github, slack, repos(checkout), metrics=LOOPBACK) as rig:
        wait_for(lambda: health(rig)[0] == 200, WAIT, "healthy after start")
        store = rig.robot.core.store
        original = store.get_head

        def refuse(repo: str) -> Any:
            raise OSError("disk on fire")

        store.get_head = refuse  # type: ignore[method-assign]
        try:
            status, body = health(rig)
        finally:
            store.get_head = original  # type: ignore[method-assign]
    assert status == 503
    assert body["checks"]["store"] is False
    assert body["reasons"] == ["the store does not answer: disk on fire"]


@pytest.mark.slow
def test_metrics_off_opens_no_listener(
    tmp_path: Path, github: FakeGitHub, slack: FakeSlack, checkout: Path
) -> None:
    with RobotRig(tmp_path, github, slack, repos(checkout)) as rig:
        assert rig.robot.metrics_server is None
        assert rig.robot.metrics is None
        assert not _listening(9464), "nothing of the robot's listens on the default metrics port"
        assert "Deploy #1 queued" in rig.command("acme/api to staging")
        rig.agree(1, DeployState.SUCCEEDED, "success")


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_metrics_server_stops_with_the_robot(
    tmp_path: Path, github: FakeGitHub, slack: FakeSlack, checkout: Path
) -> None:
    with RobotRig(tmp_path, github, slack, repos(checkout), metrics=LOOPBACK) as rig:
        server = rig.robot.metrics_server
        assert server is not None
        port = server.port
        assert _listening(port)
    assert not _listening(port)


@pytest.mark.slow
def test_alert_rules_name_only_metrics_the_endpoint_serves(
    tmp_path: Path, github: FakeGitHub, slack: FakeSlack, checkout: Path
) -> None:
    rules = yaml.safe_load(ALERTS.read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    names = {rule["alert"] for rule in alerts}
    assert {
        "DeployRobotDown",
        "DeployRobotDeploysFailing",
        "DeployRobotPollStalled",
        "DeployRobotGitHubRateLimitLow",
    } <= names
    for rule in alerts:
        assert rule["expr"] and rule["labels"]["severity"] and rule["annotations"]["summary"], rule["alert"]
    used = {name for rule in alerts for name in _metric_names(str(rule["expr"]))}
    assert used

    with RobotRig(tmp_path, github, slack, repos(checkout), metrics=LOOPBACK) as rig:
        assert "Deploy #1 queued" in rig.command("acme/api to staging")
        rig.agree(1, DeployState.SUCCEEDED, "success")
        wait_for(lambda: value(scrape(rig), "deploy_robot_poll_cycle_seconds_count") >= 1, WAIT, "a poll")
        served = set(scrape(rig))
    assert used <= served, f"alerts name metrics the robot does not serve: {sorted(used - served)}"


# Identifiers in a PromQL expression that are not metric names.
_PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
}


def _metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers not called, not label names, not keywords."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_selectors = re.sub(r"\{[^}]*\}", "", without_strings)
    without_groupings = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", without_selectors
    )
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_groupings)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", without_ranges):
        called = re.match(r"\s*\(", without_ranges[match.end() :]) is not None
        if match.group(0) not in _PROMQL_WORDS and not called:
            names.add(match.group(0))
    return names


def test_metric_names_in_promql() -> None:
    expr = 'sum by (repo) (rate(x_total{state=~"a|b"}[1h])) / on() y > 3 * z and absent(w)'
    assert _metric_names(expr) == {"x_total", "y", "z", "w"}


# ---- the pieces, without a robot ---------------------------------------------------------


class Clock:
    """A hand-moved monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _deploy(state: DeployState, deploy_id: int = 1) -> Any:
    from datetime import UTC, datetime, timedelta

    from bot.models import Deploy, Source

    end = datetime(2026, 1, 1, tzinfo=UTC)
    return Deploy(
        deploy_id, "acme/api", "production", "main", "a" * 40, "U1", Source.COMMAND, state,
        started_at=end - timedelta(seconds=40), finished_at=end,
    )  # fmt: skip


def _exposed(metrics: Any) -> dict[str, list[tuple[dict[str, str], float]]]:
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def test_a_final_state_is_counted_once_and_steps_are_timed() -> None:
    from bot.metrics import MetricsObserver, PrometheusMetrics
    from bot.models import StepResult, StepStatus

    clock = Clock()
    metrics = PrometheusMetrics(clock)
    observer = MetricsObserver(metrics, clock)
    running = _deploy(DeployState.RUNNING)
    observer.deploy_changed(running)
    observer.step_started(running, 1, 1, "make")
    clock.now += 12.5
    observer.step_finished(running, 1, StepResult(StepStatus.OK))
    done = _deploy(DeployState.SUCCEEDED)
    observer.deploy_changed(done)
    observer.deploy_changed(done)  # a final state shown again (a late GitHub status) is one deploy
    samples = _exposed(metrics)
    labels = {"repo": "acme/api", "environment": "production"}
    assert value(samples, "deploy_robot_deploys_total", state="succeeded", **labels) == 1
    assert value(samples, "deploy_robot_deploy_duration_seconds_sum", **labels) == 40
    assert value(samples, "deploy_robot_step_duration_seconds_sum", **labels) == 12.5
    assert value(samples, "deploy_robot_step_duration_seconds_bucket", le="15.0", **labels) == 1
    assert value(samples, "deploy_robot_step_duration_seconds_bucket", le="5.0", **labels) == 0
    observer.deploy_changed(_deploy(DeployState.FAILED, deploy_id=2))
    assert value(_exposed(metrics), "deploy_robot_deploys_total", **labels) == 2  # rendered again


def test_every_active_state_has_its_gauge() -> None:
    from bot.metrics import Health, PrometheusMetrics, StateCollector
    from bot.models import ACTIVE_STATES

    metrics = PrometheusMetrics(Clock())
    health = Health(metrics, lambda: True, lambda: None, poll_interval=10)
    active = [_deploy(state, n) for n, state in enumerate(ACTIVE_STATES, 1)]
    metrics.registry.register(
        StateCollector(metrics, health, [("acme/api", "production")], lambda: active, lambda: 0, 10)
    )
    samples = _exposed(metrics)
    labels = {"repo": "acme/api", "environment": "production"}
    for state in ACTIVE_STATES:
        assert value(samples, f"deploy_robot_{state.value}_deploys", **labels) == 1, state


def test_health_says_why_heartbeat_and_polls_are_late() -> None:
    from bot.metrics import Health, PrometheusMetrics

    clock = Clock()
    metrics = PrometheusMetrics(clock)
    health = Health(metrics, lambda: True, lambda: None, poll_interval=10)
    metrics.beat()
    metrics.lead_poller(True)
    assert health.check().ok
    clock.now += 29
    metrics.poll_cycle(0.1, 4, 3)
    metrics.beat()
    assert health.check().ok
    clock.now += 31
    report = health.check()
    assert not report.ok
    assert report.checks == {"slack_socket": True, "store": True, "heartbeat": False, "poller": False}
    assert report.reasons == [
        "the store last answered a heartbeat 31 s ago (> 15)",
        "the last poll cycle ended 31 s ago (> 30)",
    ]
    metrics.lead_poller(False)
    metrics.beat()
    assert health.check().ok and "poller" not in health.check().checks
    assert value(_exposed(metrics), "deploy_robot_poll_not_modified_ratio") == 0.75


# ---- logs ---------------------------------------------------------------------------------


def test_json_logs_are_one_parseable_object_per_line_with_no_secret() -> None:
    secret = "ghp_topsecret_value_123"
    stream = io.StringIO()
    root = logging.getLogger("test-json-logs")
    root.propagate = False
    root.handlers = [logging.StreamHandler(stream)]
    configure_logging(LoggingSettings(format="json", level="INFO"), Redactor([secret]), root)
    log = root.getChild("bot.pipeline")

    class Deploy:  # what deploy_fields reads
        id = 7
        repo = "acme/api"
        env = "production"

    log.info("deploy #%s: token %s in a message", 7, secret, extra=deploy_fields(Deploy()))  # type: ignore[arg-type]
    log.debug("not at INFO")
    try:
        raise RuntimeError(f"failed with {secret}")
    except RuntimeError:
        log.exception("robot fault")

    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert secret not in stream.getvalue()
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "INFO"
    assert first["logger"] == "test-json-logs.bot.pipeline"
    assert first["message"] == f"deploy #7: token {MASK} in a message"
    assert (first["deploy_id"], first["repo"], first["environment"]) == (7, "acme/api", "production")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert second["level"] == "ERROR"
    assert "Traceback" in second["message"] and f"failed with {MASK}" in second["message"]
    assert "deploy_id" not in second


def test_text_logs_are_redacted_too() -> None:
    secret = "xoxb-not-for-the-log"
    stream = io.StringIO()
    root = logging.getLogger("test-text-logs")
    root.propagate = False
    root.handlers = [logging.StreamHandler(stream)]
    configure_logging(LoggingSettings(), Redactor([secret]), root)
    try:
        raise ValueError(secret)
    except ValueError:
        root.exception("with %s", secret)
    text = stream.getvalue()
    assert secret not in text
    assert text.startswith(f"ERROR test-text-logs: with {MASK}\nTraceback")


@pytest.mark.slow
def test_robot_run_writes_json_log_lines_and_serves_metrics(
    tmp_path: Path, github: FakeGitHub, slack: FakeSlack, checkout: Path
) -> None:
    """`robot run` as a process, logging.format json: every stderr line is one JSON object."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    config = write_config(
        tmp_path,
        github.url,
        repos(checkout),
        slack=slack_section(slack),
        metrics={"host": "127.0.0.1", "port": port},
        logging={"format": "json", "level": "INFO"},
    )
    env = robot_environ()
    with subprocess.Popen(
        [PY, "-m", "bot.cli", "run", "--config", str(config)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as robot:
        try:
            slack.wait_connected(timeout=WAIT)
            wait_for(lambda: _listening(port), WAIT, "the metrics port")
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                assert "deploy_robot_poll_leader" in answer.read().decode()
        finally:
            robot.send_signal(signal.SIGTERM)
            _, stderr = robot.communicate(timeout=WAIT)
    assert robot.returncode == 0, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]
    assert any(e["message"].startswith("deploy robot connected") for e in entries), stderr
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= entry.keys()
    for secret in (env["GITHUB_TOKEN"], env["SLACK_BOT_TOKEN"], env["SLACK_APP_TOKEN"]):
        assert secret not in stderr


# ---- config, contrib, --version ---------------------------------------------------------


def test_metrics_and_logging_settings_are_validated(tmp_path: Path) -> None:
    from bot.config import load_settings
    from bot.errors import ConfigError
    from tests.support.harness import environ

    def load(**sections: Any) -> Any:
        path = write_config(
            tmp_path,
            "http://127.0.0.1:1",
            {"acme/api": {"environments": {"p": {"commands": [["true"]]}}}},
            **sections,
        )
        return load_settings(path, environ())

    assert load().metrics is None
    assert load().logging == LoggingSettings(format="text", level="INFO")
    assert load(metrics={}).metrics.port == 9464
    assert load(metrics={"port": 9100}).metrics.host == "127.0.0.1"
    with pytest.raises(ConfigError, match=r"metrics\.port"):
        load(metrics={"port": 70000})
    with pytest.raises(ConfigError, match=r"metrics\.path"):
        load(metrics={"path": "/x"})
    with pytest.raises(ConfigError, match=r"logging\.format"):
        load(logging={"format": "xml"})


def test_the_example_documents_metrics_and_logging(tmp_path: Path) -> None:
    from bot.config import load_settings
    from tests.support.rig import robot_environ as environ

    text = (ROOT / "robot.yaml.example").read_text()
    assert load_settings(ROOT / "robot.yaml.example", environ()).metrics is None  # off unless asked
    on = re.sub(r"^# (metrics:| {2}host:| {2}port:)", r"\1", text, flags=re.MULTILINE)
    path = tmp_path / "robot.yaml"
    path.write_text(on)
    settings = load_settings(path, environ())
    assert settings.metrics is not None
    assert (settings.metrics.host, settings.metrics.port) == ("127.0.0.1", 9464)
    assert settings.logging == LoggingSettings(format="text", level="INFO")


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def test_systemd_unit_runs_the_robot_hardened() -> None:
    from bot.config.schema import DeploySettings

    unit = _unit()
    service = unit["Service"]
    assert service["User"] == "robot" and service["Group"] == "robot"
    assert service["ExecStart"].split()[1:2] == ["run"] and service["ExecStart"].split()[0].endswith("/robot")
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM"
    # The robot exits within deploys.stop_timeout (+ 1 s) of SIGTERM; systemd must not SIGKILL it first.
    assert DeploySettings().stop_timeout + 1 < int(service["TimeoutStopSec"])
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["ProtectHome"] == "yes"
    assert service["PrivateTmp"] == "yes"
    assert service["StateDirectory"] == "robot"
    assert "/var/lib/robot" in service["ReadWritePaths"].split()
    assert service["EnvironmentFile"].startswith("/etc/robot/")
    assert service["WorkingDirectory"] == "/var/lib/robot"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert "network-online.target" in unit["Unit"]["After"].split()


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here (no systemd); the unit's keys are checked above")
    # verify insists that ExecStart's binary exists: point it at one this machine has.
    unit = tmp_path / "robot.service"
    unit.write_text(
        UNIT.read_text().replace("/opt/robot/.venv/bin/robot", shutil.which("true") or "/bin/true")
    )
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_version_comes_from_the_package_metadata() -> None:
    from importlib.metadata import version

    out = run_cli(ROOT / "robot.yaml.example", "--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"robot {version('deploy-robot')}"
