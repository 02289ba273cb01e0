"""The robot as a GitHub App: robot.yaml keys, the fake's App endpoints, expiring installation tokens."""

from __future__ import annotations

import base64
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from bot.config import Settings
from bot.errors import ConfigError, GitHubError, UnknownRepo
from bot.github import GitHubGateway
from bot.models import AppCredentials, DeployState, Source
from bot.redact import MASK, Redactor
from tests.fakes.github import FakeApp, FakeGitHub, FakeInstallation, generate_app_key
from tests.fakes.memory import RecordingObserver
from tests.support.github_fixtures import GatewayFactory
from tests.support.harness import (
    environ,
    make_git_repo,
    run_cli,
    slack_user,
    start_core,
    wait_final,
    write_config,
)
from tests.support.wait import wait_for

REPO = "acme/api"
PY = sys.executable


@pytest.fixture(scope="module")
def pem() -> str:
    """One App key for the module's config tests (generated: no key is ever committed)."""
    return generate_app_key()


# ---- robot.yaml: github.app_id + github.private_key ------------------------------------


def load(tmp_path: Path, github: str, env: dict[str, str] | None = None) -> Settings:
    from bot.config import load_settings

    path = tmp_path / "robot.yaml"
    path.write_text(f"github: {github}\nrepos:\n  {REPO}: {{commands: [[echo, hi]]}}\n")
    return load_settings(path, env or {})


def config_error(tmp_path: Path, github: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, github, env)
    message = str(caught.value)
    first, *more = message.split("\n")
    assert first.startswith(f"{tmp_path / 'robot.yaml'}: ")
    # One problem is one line; several are listed at once, one line each.
    assert not more or (first.endswith(f" {len(more)} problems:") and all(m.startswith("  - ") for m in more))
    return message


def test_an_app_from_the_environment(tmp_path: Path, pem: str) -> None:
    env = {"GITHUB_APP_ID": "4242", "GITHUB_APP_PRIVATE_KEY": pem}
    settings = load(tmp_path, '{app_id: "${GITHUB_APP_ID}", private_key: "${GITHUB_APP_PRIVATE_KEY}"}', env)
    assert settings.github.token is None
    assert settings.github.app == AppCredentials(4242, pem, None)
    assert pem not in repr(settings.github) and pem not in repr(settings.github.app)
    # The key is a secret: masked in whatever the robot writes, even one line of it at a time,
    # and kept out of step environments (which drop every value in `tokens`).
    assert pem in settings.tokens and pem in settings.secrets
    redact = Redactor(settings.secrets)
    body = [line for line in pem.splitlines() if not line.startswith("-----")]
    assert all(redact(f"step printed {line}") == f"step printed {MASK}" for line in body[:-1])


def test_a_key_file_relative_to_robot_yaml_or_absolute(tmp_path: Path, pem: str) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "app.pem").write_text(pem)
    relative = load(tmp_path, "{app_id: 7, private_key: keys/app.pem, installation_id: 99}")
    assert relative.github.app == AppCredentials(7, pem, 99)
    assert pem in relative.tokens
    absolute = load(tmp_path, f"{{app_id: 7, private_key: {tmp_path / 'keys' / 'app.pem'}}}")
    assert absolute.github.private_key == pem


def test_exactly_one_of_token_and_app(tmp_path: Path, pem: str) -> None:
    env = {"GITHUB_APP_PRIVATE_KEY": pem}
    both = config_error(tmp_path, '{token: t, app_id: 1, private_key: "${GITHUB_APP_PRIVATE_KEY}"}', env)
    assert "github: set either `github.token` or a GitHub App" in both
    assert "`github.app_id` + `github.private_key`" in both and "not both" in both
    neither = config_error(tmp_path, "{api_url: 'https://api.github.com'}")
    assert "github: set `github.token`, or `github.app_id` + `github.private_key`" in neither
    half = config_error(tmp_path, "{app_id: 1}")
    assert "needs both `github.app_id` and `github.private_key`; set `github.private_key`" in half
    other_half = config_error(tmp_path, '{private_key: "${GITHUB_APP_PRIVATE_KEY}"}', env)
    assert "set `github.app_id`" in other_half and pem not in other_half
    pinned = config_error(tmp_path, "{token: t, installation_id: 5}")
    assert "`github.installation_id` belongs to a GitHub App" in pinned
    assert "github.app_id: " in config_error(tmp_path, "{app_id: nope, private_key: x.pem}")


def test_unreadable_key_file_is_named(tmp_path: Path) -> None:
    message = config_error(tmp_path, "{app_id: 1, private_key: missing.pem}")
    assert f"github.private_key: cannot read key file {tmp_path / 'missing.pem'}" in message
    (tmp_path / "binary.pem").write_bytes(b"\xff\xfe\x00garbage")
    assert f"key file {tmp_path / 'binary.pem'} is not a PEM private key" in config_error(
        tmp_path, "{app_id: 1, private_key: binary.pem}"
    )


def test_a_bad_key_is_refused_without_quoting_it(tmp_path: Path, pem: str) -> None:
    broken = pem.replace(pem.splitlines()[3], "A" * 64)
    env = {"GITHUB_APP_PRIVATE_KEY": broken}
    message = config_error(tmp_path, '{app_id: 1, private_key: "${GITHUB_APP_PRIVATE_KEY}"}', env)
    assert "github.private_key: the key is not a PEM private key" in message
    assert "A" * 64 not in message and "BEGIN" not in message
    (tmp_path / "notes.txt").write_text("not a key\n")
    assert f"github.private_key: key file {tmp_path / 'notes.txt'} is not a PEM private key" in config_error(
        tmp_path, "{app_id: 1, private_key: notes.txt}"
    )


def test_an_encrypted_or_non_rsa_key_is_refused(tmp_path: Path) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    encrypted = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    (tmp_path / "locked.pem").write_bytes(encrypted)
    assert "locked.pem is encrypted" in config_error(tmp_path, "{app_id: 1, private_key: locked.pem}")
    ec_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "ec.pem").write_bytes(ec_key)
    assert "ec.pem is not an RSA key" in config_error(tmp_path, "{app_id: 1, private_key: ec.pem}")


def test_gateway_wants_a_token_or_an_app(pem: str) -> None:
    with pytest.raises(ValueError, match="exactly one of a token and a GitHub App"):
        GitHubGateway(None, "http://127.0.0.1:9")
    with pytest.raises(ValueError, match="exactly one of a token and a GitHub App"):
        GitHubGateway("t", "http://127.0.0.1:9", app=AppCredentials(1, pem))


# ---- the fake GitHub's App endpoints ----------------------------------------------------


@pytest.fixture
def app(fake_github: FakeGitHub) -> FakeApp:
    """The robot's App, registered with the fake GitHub."""
    return fake_github.add_app()


@pytest.fixture
def installed(fake_github: FakeGitHub, app: FakeApp) -> FakeInstallation:
    """acme/api, with the App installed on all of acme's repos."""
    fake_github.add_repo(REPO)
    return fake_github.install_app(app, "acme")


def app_jwt(app_id: int, key: str, expires_in: int = 300) -> str:
    now = int(time.time())
    return jwt.encode({"iat": now - 60, "exp": now + expires_in, "iss": str(app_id)}, key, algorithm="RS256")


def call(fake: FakeGitHub, method: str, path: str, auth: str) -> requests.Response:
    return requests.request(method, f"{fake.url}{path}", headers={"Authorization": auth}, timeout=5)


@pytest.mark.slow
def test_fake_verifies_the_jwt_and_expires_tokens(
    fake_github: FakeGitHub, app: FakeApp, installed: FakeInstallation
) -> None:
    fake_github.add_repo("acme/hidden")
    assert (
        call(fake_github, "GET", "/app", f"Bearer {app_jwt(app.id, app.private_key)}").json()["slug"]
        == app.slug
    )
    # Signed by another key, expired, for another app, or a token where a JWT belongs: refused.
    stranger = generate_app_key()
    assert call(fake_github, "GET", "/app", f"Bearer {app_jwt(app.id, stranger)}").status_code == 401
    expired = app_jwt(app.id, app.private_key, expires_in=-10)
    assert call(fake_github, "GET", "/app", f"Bearer {expired}").status_code == 401
    assert (
        call(fake_github, "GET", "/app", f"Bearer {app_jwt(app.id + 1, app.private_key)}").status_code == 401
    )
    assert call(fake_github, "GET", "/app", f"token {fake_github.token}").status_code == 401
    fake_github.token_lifetime = 0.5
    bearer = f"Bearer {app_jwt(app.id, app.private_key)}"
    answer = call(fake_github, "POST", f"/app/installations/{installed.id}/access_tokens", bearer)
    assert answer.status_code == 201 and answer.json()["expires_at"].endswith("Z")
    token = answer.json()["token"]
    assert [t.token for t in fake_github.issued_tokens] == [token]
    assert call(fake_github, "GET", f"/repos/{REPO}", f"token {token}").status_code == 200
    # An installation token is no JWT, and a JWT no token.
    assert call(fake_github, "GET", "/app", f"token {token}").status_code == 401
    assert call(fake_github, "GET", f"/repos/{REPO}", bearer).status_code == 401
    time.sleep(0.6)
    assert call(fake_github, "GET", f"/repos/{REPO}", f"token {token}").status_code == 401
    assert fake_github.expired_refusals == 1
    # An installation on selected repos: its token reads those only, as if the others did not exist.
    fake_github.token_lifetime = 60
    fake_github.add_repo("beta/lib")
    fake_github.add_repo("beta/other")
    beta = fake_github.install_app(app, "beta", repos=["beta/lib"])
    assert call(fake_github, "GET", "/repos/beta/other/installation", bearer).status_code == 404
    assert call(fake_github, "GET", "/repos/beta/lib/installation", bearer).json()["id"] == beta.id
    assert call(fake_github, "GET", "/repos/acme/hidden/installation", bearer).json()["id"] == installed.id
    answer = call(fake_github, "POST", f"/app/installations/{beta.id}/access_tokens", bearer)
    beta_token = f"token {answer.json()['token']}"
    assert call(fake_github, "GET", "/repos/beta/lib", beta_token).status_code == 200
    assert call(fake_github, "GET", "/repos/beta/other", beta_token).status_code == 404
    assert call(fake_github, "GET", f"/repos/{REPO}", beta_token).status_code == 404
    assert call(fake_github, "GET", "/user", beta_token).status_code == 403


@pytest.mark.slow
def test_a_wrong_key_is_refused(
    fake_github: FakeGitHub, make_gateway: GatewayFactory, app: FakeApp, installed: FakeInstallation
) -> None:
    gateway = make_gateway(app=AppCredentials(app.id, generate_app_key()))
    with pytest.raises(GitHubError, match="401") as caught:
        gateway.resolve_ref(REPO, "main")
    assert "BEGIN" not in str(caught.value)
    assert fake_github.requests[-1] == ("GET", f"/repos/{REPO}/installation", 401)
    assert fake_github.issued_tokens == []
    with pytest.raises(GitHubError, match="GitHub refused the App's credentials"):
        gateway.check_app()


# ---- the gateway as an App ---------------------------------------------------------------


def installation_lookups(fake: FakeGitHub) -> list[str]:
    return [r.path for r in fake.requests if r.path.endswith("/installation")]


@pytest.mark.slow
def test_installation_is_looked_up_once_per_owner(
    fake_github: FakeGitHub, make_gateway: GatewayFactory, app: FakeApp, installed: FakeInstallation
) -> None:
    fake_github.add_repo("acme/web")
    fake_github.add_repo("beta/lib")
    beta = fake_github.install_app(app, "beta", repos=["beta/lib"])
    gateway = make_gateway(app=AppCredentials(app.id, app.private_key))
    with ThreadPoolExecutor(8) as pool:  # first calls race: still one lookup per owner
        heads = list(pool.map(lambda r: gateway.resolve_ref(r, "main"), [REPO, "acme/web", "beta/lib"] * 4))
    for repo in (REPO, "acme/web", "beta/lib"):
        gateway.poll_head(repo, "main", None)
        gateway.pulls_for_commit(repo, fake_github.head(repo, "main"))
    assert heads[:3] == [fake_github.head(r, "main") for r in (REPO, "acme/web", "beta/lib")]
    # GET /repos/{owner}/{name}/installation: whichever of acme's repos came first, once per owner.
    assert sorted(path.split("/")[2] for path in installation_lookups(fake_github)) == ["acme", "beta"]
    assert [ident for ident, _ in gateway.installations()] == sorted([installed.id, beta.id])
    assert all(r.status < 400 for r in fake_github.requests)


@pytest.mark.slow
def test_a_pinned_installation_is_not_looked_up(
    fake_github: FakeGitHub, make_gateway: GatewayFactory, app: FakeApp, installed: FakeInstallation
) -> None:
    gateway = make_gateway(app=AppCredentials(app.id, app.private_key, installed.id))
    assert gateway.resolve_ref(REPO, "main") == fake_github.head(REPO, "main")
    assert installation_lookups(fake_github) == []
    assert fake_github.count("GET", f"/app/installations/{installed.id}") == 1
    wrong = make_gateway(app=AppCredentials(app.id, app.private_key, installed.id + 1000))
    with pytest.raises(GitHubError, match=f"has no installation {installed.id + 1000}"):
        wrong.resolve_ref(REPO, "main")


@pytest.mark.slow
def test_a_repo_the_app_cannot_reach(
    fake_github: FakeGitHub, make_gateway: GatewayFactory, app: FakeApp, installed: FakeInstallation
) -> None:
    fake_github.add_repo("beta/lib")
    gateway = make_gateway(app=AppCredentials(app.id, app.private_key))
    with pytest.raises(
        UnknownRepo, match=rf"the GitHub App {app.id} is not installed on it \(install the App on beta"
    ):
        gateway.resolve_ref("beta/lib", "main")
    with pytest.raises(UnknownRepo):
        gateway.poll_head("beta/lib", "main", None)
    assert "the App can create deployments" in gateway.check_access(REPO)


@pytest.fixture
def short_tokens(github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    """Installation tokens that expire within a test.

    Real tokens last an hour and PyGithub renews one 20 s before it expires; both are scaled
    down here (3 s, 1 s) so that tokens really expire, and the fake refuses them, mid-test.
    """
    monkeypatch.setattr("github.Auth.TOKEN_REFRESH_THRESHOLD_TIMEDELTA", timedelta(seconds=1))
    github.token_lifetime = 3.0


@pytest.fixture
def app_robot(tmp_path: Path, github: FakeGitHub) -> Iterator[Any]:
    """A started core acting as a GitHub App on ``github`` (the conftest fake), and its observer."""
    app = github.add_app()
    github.add_repo(REPO)
    github.install_app(app, "acme")
    checkout = make_git_repo(tmp_path / "checkout")
    step = [PY, "-c", "import os; print('key' if os.environ.get('GITHUB_APP_PRIVATE_KEY') else 'no key')"]
    repos = {
        REPO: {
            "required_contexts": ["ci/test"],
            "environments": {"production": {"folder": str(checkout), "commands": [step]}},
        }
    }
    section = {
        "app_id": app.id,
        "private_key": "${GITHUB_APP_PRIVATE_KEY}",
        "api_url": github.url,
        "seconds_between_requests": 0,
        "seconds_between_writes": 0,
        "timeout": 5,
        "max_retries": 3,
    }
    config = write_config(tmp_path, github.url, repos, github=section)
    observer = RecordingObserver()
    core = start_core(config, observer, environ(GITHUB_APP_PRIVATE_KEY=app.private_key))
    core.service.start()
    try:
        yield core, observer
    finally:
        core.service.stop(timeout=10)
        core.github.close()
        core.close()


@pytest.mark.slow
def test_deploy_and_poll_across_token_expiry(github: FakeGitHub, short_tokens: None, app_robot: Any) -> None:
    core, observer = app_robot
    sha = github.head(REPO, "main")
    github.set_status(REPO, sha, "ci/test", "pending")
    deploy, created = core.service.request(REPO, user=slack_user("U1"), source=Source.COMMAND)
    assert created
    # The deploy waits on CI (re-checked) while the poller polls: both outlive two token lifetimes.
    etag, until = None, time.monotonic() + 7
    while time.monotonic() < until:
        poll = core.github.poll_head(REPO, "main", etag)
        etag = poll.etag
        time.sleep(0.2)
    assert core.service.get(deploy.id).state is DeployState.WAITING
    github.set_status(REPO, sha, "ci/test", "success")
    final = wait_final(core, deploy.id)
    assert final.state is DeployState.SUCCEEDED, final.error
    (deployment,) = github.deployments(REPO)
    assert deployment.sha == sha and deployment.statuses[-1]["body"]["state"] == "success"
    wait_for(lambda: observer.lines.get(deploy.id) == ["no key"], what="the step's output")
    # Fresh tokens were fetched as the old ones aged; no request ever went out with an expired one.
    assert len(github.issued_tokens) >= 4
    assert github.expired_refusals == 0
    assert [r for r in github.requests if r.status >= 400] == []
    assert installation_lookups(github) == [f"/repos/{REPO}/installation"]


# ---- robot check --online --------------------------------------------------------------


@pytest.mark.slow
def test_check_online_reports_the_app_installations_and_unreachable_repos(
    tmp_path: Path, github: FakeGitHub
) -> None:
    app = github.add_app(slug="acme-deployer", name="Acme Deployer")
    github.add_repo(REPO)
    github.add_repo("beta/lib")
    acme = github.install_app(app, "acme")
    (tmp_path / "app.pem").write_text(app.private_key)
    checkout = make_git_repo(tmp_path / "checkout")
    env_settings = {"environments": {"production": {"folder": str(checkout), "commands": [["true"]]}}}
    section = {"app_id": app.id, "private_key": "app.pem", "api_url": github.url, "timeout": 5}
    config = write_config(
        tmp_path, github.url, {REPO: env_settings, "beta/lib": env_settings}, github=section
    )

    done = run_cli(config, "check", "--online")
    lines = done.stdout.splitlines()
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"✓ github app: Acme Deployer (acme-deployer), app id {app.id}" in lines
    assert f"✓ github installation {acme.id}: on acme, serving the repos of acme" in lines
    reached = f"readable through installation {acme.id} on acme; the App can create deployments"
    assert f"✓ github {REPO}: {REPO}: {reached}" in lines
    assert any(
        line.startswith(f"✗ github beta/lib: GitHub has no repo beta/lib, or the GitHub App {app.id} is not")
        for line in lines
    )
    body = app.private_key.splitlines()[1]
    assert body not in done.stdout + done.stderr

    github.install_app(
        app, "beta", permissions={"metadata": "read", "contents": "read", "deployments": "read"}
    )
    short = run_cli(config, "check", "--online")
    assert short.returncode == 1
    assert any(
        line.startswith("✗ github beta/lib: beta/lib: readable through installation")
        and "lacks deployments: write, statuses: read, checks: read, pull_requests: read" in line
        for line in short.stdout.splitlines()
    ), short.stdout

    (tmp_path / "app.pem").write_text(generate_app_key())
    refused = run_cli(config, "check", "--online")
    assert refused.returncode == 1
    assert "✗ github app: GitHub refused the App's credentials (401" in refused.stdout
    assert "✓ github acme/api" not in refused.stdout


def test_a_key_in_another_form_is_refused_without_being_echoed(tmp_path: Path, pem: str) -> None:
    encoded = base64.b64encode(pem.encode()).decode()  # as a Kubernetes secret holds it
    message = config_error(tmp_path, "{app_id: 7, private_key: \"${KEY}\"}", {"KEY": encoded})
    assert "github.private_key: is neither PEM text" in message
    assert encoded[:40] not in message
