"""`robot check`: what robot.yaml points at is there, and (online) the tokens work."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from bot.config import Settings
from bot.errors import BotError
from bot.github import GitHubGateway
from bot.models import CheckResult
from bot.preflight import environment_problem, resolve
from bot.store import SqlStore
from bot.store.engine import shown_url


def run_checks(settings: Settings, environ: Mapping[str, str], online: bool) -> Iterator[CheckResult]:
    """Offline checks always; with ``online``, GitHub access per repo and the Slack tokens."""
    yield CheckResult("config", True, f"{len(settings.repos)} repo(s) in {settings.path}")
    for repo, repo_settings in settings.repos.items():
        for env_name in repo_settings.environments:
            yield check_environment(settings, repo, env_name, environ)
    yield from _check_store(settings)
    if online:
        yield from _check_github(settings)
        if settings.slack.bot_token or settings.slack.app_token:
            from bot.slack.access import check_slack  # only an online check pays for slack_sdk

            yield from check_slack(settings.slack)


def check_environment(
    settings: Settings, repo: str, env_name: str, environ: Mapping[str, str]
) -> CheckResult:
    """Whether an environment's steps can start here: folder, playbook, inventory, ansible-playbook."""
    what = f"{repo} {env_name}"
    reason = environment_problem(settings, repo, env_name, environ)
    if reason is not None:
        return CheckResult(what, False, reason)
    env = settings.repos[repo].environments[env_name]
    folder = settings.folder(env)
    if env.ansible is None:
        return CheckResult(what, True, f"{len(env.commands or [])} command(s) in {folder}")
    return CheckResult(what, True, f"playbook {resolve(folder, env.ansible.playbook)}")


def _check_store(settings: Settings) -> Iterator[CheckResult]:
    # Opened without upgrading: checking must not write a schema into the database.
    try:
        store = SqlStore.from_url(settings.state.url, upgrade=False)
        try:
            schema = store.schema_state()
        finally:
            store.close()
    except BotError as exc:
        yield CheckResult("state", False, str(exc))
        return
    yield CheckResult("state", True, shown_url(settings.state.url))
    if schema.current is None:
        yield CheckResult("schema", True, f"empty; `robot run` or `robot deploy` creates {schema.head}")
    elif schema.newer:
        yield CheckResult("schema", False, str(schema.newer_error()))
    elif schema.behind:
        yield CheckResult("schema", False, f"{schema.label}, behind {schema.head}: run `robot db upgrade`")
    else:
        yield CheckResult("schema", True, f"{schema.label}, this robot's head")


def _check_github(settings: Settings) -> Iterator[CheckResult]:
    gh = settings.github
    github = GitHubGateway(
        gh.token, gh.api_url, app=gh.app, timeout=gh.timeout, max_retries=min(gh.max_retries, 2)
    )
    try:
        if github.is_app:
            try:
                yield CheckResult("github app", True, github.check_app())
            except BotError as exc:
                yield CheckResult("github app", False, str(exc))
                return  # no repo is reachable without the App: one line says why
        else:
            try:
                yield CheckResult("github token", True, github.check_token())
            except BotError as exc:
                yield CheckResult("github token", False, str(exc))
                return  # a refused token reaches no repo: one line says why
        reached = [_check_repo(github, repo) for repo in settings.repos]
        for ident, line in github.installations():
            yield CheckResult(f"github installation {ident}", True, line)
        yield from reached
    finally:
        github.close()


def _check_repo(github: GitHubGateway, repo: str) -> CheckResult:
    try:
        return CheckResult(f"github {repo}", True, github.check_access(repo))
    except BotError as exc:
        return CheckResult(f"github {repo}", False, str(exc))
