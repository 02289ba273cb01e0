"""robot.yaml loading: expansion, the flat form, and one clear error per kind of mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import Settings, load_settings
from bot.errors import ConfigError, UnknownEnvironment, UnknownRepo
from bot.models import AnsibleStep, CommandStep, RequiredContext

ROOT = Path(__file__).resolve().parent.parent
ENV = {
    "GITHUB_TOKEN": "ghp_secret_value_1",
    "SLACK_BOT_TOKEN": "xoxb-1",
    "SLACK_APP_TOKEN": "xapp-1",
}

MINIMAL = """
github: {token: "${GITHUB_TOKEN}"}
repos:
  acme/api:
    environments:
      staging: {commands: [[echo, hi]]}
      production: {commands: [[echo, "{sha}"]], env: {APP_ENV: production}}
"""


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Settings:
    path = tmp_path / "robot.yaml"
    path.write_text(text)
    return load_settings(path, ENV if env is None else env)


def error_of(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, env)
    message = str(info.value)
    first, *more = message.split("\n")
    assert first.startswith(f"{tmp_path / 'robot.yaml'}: ")
    # One problem is one line; several are all listed at once, one bounded line each.
    assert not more or (first.endswith(f" {len(more)} problems:") and all(m.startswith("  - ") for m in more))
    assert all(len(line) <= 600 for line in [first, *more])
    return message


def test_example_file_is_valid_and_documents_every_form() -> None:
    settings = load_settings(ROOT / "robot.yaml.example", ENV)
    api = settings.repos["acme/api"]
    assert api.default_env == "staging"
    assert api.context_names == ["ci/test", "build"]
    assert settings.repos["acme/web"].environments["production"].steps() == [
        CommandStep(("git", "fetch")),
        CommandStep(("git", "pull", "origin", "master")),
    ]
    infra = settings.repos["acme/infra"].environments["production"].steps()
    assert infra == [AnsibleStep("playbook.yml", "hosts_file", ())]
    assert "ghp_secret_value_1" in settings.secrets


def test_defaults_and_lookup(tmp_path: Path) -> None:
    settings = load(tmp_path, MINIMAL)
    assert settings.github.poll_interval == 30
    assert settings.deploys.stop_timeout == 10
    assert settings.state.url == "sqlite:///robot.db"
    assert settings.repo("api")[0] == "acme/api"
    assert settings.environment("acme/api", None)[0] == "staging"
    assert settings.folder(settings.repos["acme/api"].environments["staging"]) == tmp_path
    with pytest.raises(UnknownEnvironment, match="Environments: staging, production"):
        settings.environment("acme/api", "prod")
    with pytest.raises(UnknownRepo, match="Configured repos: acme/api"):
        settings.repo("acme/nope")


def test_ambiguous_short_name(tmp_path: Path) -> None:
    text = MINIMAL + "  other/api:\n    commands: [[echo]]\n    folder: .\n"
    settings = load(tmp_path, text)
    with pytest.raises(UnknownRepo, match="ambiguous: acme/api, other/api"):
        settings.repo("api")


def test_expansion_rules(tmp_path: Path) -> None:
    text = MINIMAL.replace("APP_ENV: production", 'APP_ENV: "$${HOME} $HOME ${REGION}"')
    settings = load(tmp_path, text, {**ENV, "REGION": "eu"})
    env = settings.repos["acme/api"].environments["production"].env
    assert env == {"APP_ENV": "${HOME} $HOME eu"}
    assert "eu" not in settings.secrets


def test_unset_variable_is_named(tmp_path: Path) -> None:
    message = error_of(tmp_path, MINIMAL, env={})
    assert "github.token: environment variable GITHUB_TOKEN is not set" in message


def test_bad_variable_name(tmp_path: Path) -> None:
    message = error_of(tmp_path, MINIMAL.replace("${GITHUB_TOKEN}", "${GIT HUB}"))
    assert "`${GIT HUB}` is not a variable name" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("github: [unclosed", "not valid YAML"),
        ("- just\n- a list\n", "expected a mapping"),
        (MINIMAL + "extra_section: 1\n", "extra_section: unknown key; allowed keys: slack, github"),
        (
            MINIMAL.replace("staging: {commands", "staging: {comands: x, commands"),
            "repos.acme/api.environments.staging.comands: unknown key; allowed keys: folder, timeout",
        ),
        (
            MINIMAL.replace("    environments:", "    requried_contexts: [ci]\n    environments:"),
            "repos.acme/api.requried_contexts: unknown key; allowed keys: branch, channel",
        ),
        ("repos: {}\n", "github: required key is missing"),
        (MINIMAL.replace("github: {", "github: {poll_interval: 0, "), "github.poll_interval"),
        (MINIMAL.replace("github: {", "github: {timeout: soon, "), "(got 'soon')"),
        (MINIMAL.replace("acme/api:", "'acme api':"), "is not a repo name"),
        (MINIMAL.replace("acme/api:", "'../etc':"), "is not a repo name"),
        (
            MINIMAL.replace("{commands: [[echo, hi]]}", "{}"),
            "set exactly one of `commands` (argv lists) or `ansible`",
        ),
        (
            MINIMAL.replace("{commands: [[echo, hi]]}", "{commands: [[echo]], ansible: {playbook: p}}"),
            "set exactly one of",
        ),
        (MINIMAL.replace("[[echo, hi]]", "[[]]"), "non-empty argv list"),
        (MINIMAL.replace("[[echo, hi]]", "'echo hi'"), "staging.commands"),
        (
            MINIMAL.replace("    environments:", "    default_environment: prod\n    environments:"),
            "default_environment `prod` is not one of: staging, production",
        ),
        (
            MINIMAL.replace("    environments:", "    auto_deploy: qa\n    environments:"),
            "auto_deploy `qa` is not one of",
        ),
        (
            MINIMAL.replace("    environments:", "    on_merge: sometimes\n    environments:"),
            "on_merge",
        ),
        (
            MINIMAL.replace("    environments:", "    folder: /srv\n    environments:"),
            "use either `environments` or the flat form (folder), not both",
        ),
        (
            "github: {token: t}\nrepos:\n  acme/infra: {ansible_hosts: hosts}\n",
            "`ansible_hosts` needs `ansible_playbook`",
        ),
        ("github: {token: t}\nrepos: {}\n", "configure at least one repo"),
        (MINIMAL + "deploys: {stop_timeout: 1}\n", "deploys.stop_timeout"),
        ("github: {token: t}\npath: /etc\nrepos: {}\n", "`path` is not a configuration key"),
    ],
)
def test_each_mistake_is_one_clear_line(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error_of(tmp_path, text)


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    text = MINIMAL.replace("[[echo, hi]]", "[[]]").replace(
        "    environments:", "    on_merge: sometimes\n    environments:"
    )
    message = error_of(tmp_path, text + "colour: blue\n")
    lines = message.split("\n")
    assert lines[0].endswith(": 3 problems:")
    assert any("non-empty argv list" in line for line in lines[1:])
    assert any("on_merge" in line for line in lines[1:])
    assert any("colour: unknown key" in line for line in lines[1:])


def test_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no such file\. Copy robot\.yaml\.example"):
        load_settings(tmp_path / "robot.yaml", ENV)


def test_environment_names_are_plain_words(tmp_path: Path) -> None:
    message = error_of(tmp_path, MINIMAL.replace("      staging:", "      'stag ing':"))
    assert "environment name `stag ing` must be letters, digits" in message


def test_every_unset_variable_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(ROOT / "robot.yaml.example", {})
    message = str(info.value)
    assert "environment variables not set: SLACK_BOT_TOKEN (slack.bot_token), " in message
    assert "SLACK_APP_TOKEN (slack.app_token), GITHUB_TOKEN (github.token)" in message
    assert "\n" not in message


def test_slack_variables_are_optional_where_slack_is_not_used() -> None:
    env = {"GITHUB_TOKEN": "ghp_only_github_12345", "API_SECRET": "s3cret-value"}
    settings = load_settings(ROOT / "robot.yaml.example", env, optional_sections=("slack",))
    assert not settings.slack.bot_token and not settings.slack.app_token
    assert settings.github.token == "ghp_only_github_12345"
    # A variable the deploy itself needs is never optional.
    with pytest.raises(ConfigError, match=r"github\.token: environment variable GITHUB_TOKEN is not set"):
        load_settings(ROOT / "robot.yaml.example", {}, optional_sections=("slack",))


def test_required_contexts_may_pin_an_app_and_accept_conclusions(tmp_path: Path) -> None:
    contexts = "    required_contexts: [ci/test, {name: build, app: github-actions, accept: [skipped]}]\n"
    settings = load(tmp_path, MINIMAL.replace("    environments:\n", contexts + "    environments:\n", 1))
    api = settings.repos["acme/api"]
    assert api.gate == (
        RequiredContext("ci/test"),
        RequiredContext("build", "github-actions", frozenset({"skipped"})),
    )
    assert api.context_names == ["ci/test", "build"]
    bad = MINIMAL.replace(
        "    environments:\n",
        "    required_contexts: [{name: build, accept: [failure]}]\n    environments:\n",
        1,
    )
    message = error_of(tmp_path, bad)
    assert "repos.acme/api.required_contexts.0.accept.0: Input should be 'neutral' or 'skipped'" in message
