"""The robot.yaml settings models: validated, frozen, with the lookups the robot uses (DESIGN §5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bot.errors import UnknownEnvironment, UnknownRepo
from bot.models import AnsibleStep, CommandStep, Step
from bot.validation import ENV_NAME, REPO_NAME_HELP, is_valid_repo_name


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlackSettings(_Model):
    """Slack tokens and where messages go."""

    bot_token: str | None = None
    app_token: str | None = None
    channel: str = "#deploys"
    api_url: str = "https://slack.com/api/"
    ping_interval: float = Field(10, gt=0)
    message_interval: float = Field(2.0, ge=0)
    channel_interval: float = Field(1.0, ge=0)


class GitHubSettings(_Model):
    """GitHub token, API host, polling and client throttling."""

    token: str
    api_url: str = "https://api.github.com"
    poll_interval: float = Field(30, ge=1)
    # GitHub asks for serial requests and a pause before writes only; paced reads made a merge
    # announcement miss "poll interval + 1 s" (bench/poll_cost.py), so reads are unpaced.
    seconds_between_requests: float = Field(0.0, ge=0)
    seconds_between_writes: float = Field(1.0, ge=0)
    timeout: int = Field(15, ge=1)  # PyGithub takes whole seconds
    max_retries: int = Field(5, ge=0, le=20)


class StateSettings(_Model):
    """Where the store lives."""

    url: str = "sqlite:///robot.db"


class DeploySettings(_Model):
    """How the deploy service runs: parallelism, CI re-check pace, kill grace."""

    workers: int = Field(4, ge=1, le=64)
    ci_poll_interval: float = Field(15, gt=0)
    kill_grace: float = Field(10, ge=0)


class MetricsSettings(_Model):
    """Where `robot run` serves Prometheus `/metrics` and `/healthz` (off when the section is absent)."""

    host: str = "127.0.0.1"
    port: int = Field(9464, ge=0, le=65535)  # 0: any free port (tests)


class LoggingSettings(_Model):
    """How `robot run` writes its log: text lines or one JSON object per line."""

    format: Literal["text", "json"] = "text"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class AnsibleSettings(_Model):
    """One playbook run by ansible-runner."""

    playbook: str
    inventory: str | None = None
    extravars: dict[str, Any] = Field(default_factory=dict)


class EnvironmentSettings(_Model):
    """One deploy target of a repo: where and how to run its steps."""

    folder: Path | None = None
    timeout: float = Field(600, gt=0)
    deploy_timeout: float = Field(3600, gt=0)
    env: dict[str, str] = Field(default_factory=dict)
    commands: list[list[str]] | None = None
    ansible: AnsibleSettings | None = None

    @field_validator("commands")
    @classmethod
    def _argv_not_empty(cls, commands: list[list[str]] | None) -> list[list[str]] | None:
        if commands is not None:
            if not commands:
                raise ValueError("needs at least one command")
            for argv in commands:
                if not argv or not argv[0]:
                    raise ValueError("each command is a non-empty argv list, e.g. [git, pull]")
        return commands

    @model_validator(mode="after")
    def _one_kind_of_step(self) -> EnvironmentSettings:
        if (self.commands is None) == (self.ansible is None):
            raise ValueError("set exactly one of `commands` (argv lists) or `ansible` (a playbook)")
        return self

    def steps(self) -> list[Step]:
        if self.ansible is not None:
            a = self.ansible
            return [AnsibleStep(a.playbook, a.inventory, tuple(sorted(a.extravars.items())))]
        return [CommandStep(tuple(argv)) for argv in self.commands or []]


class RepoSettings(_Model):
    """One repo: its branch, gate, who may deploy, and its environments."""

    branch: str = "main"
    channel: str | None = None
    default_environment: str | None = None
    on_merge: Literal["announce", "deploy", "ignore"] = "announce"
    auto_deploy: str | None = None
    required_contexts: list[str] = Field(default_factory=list)
    deployers: list[str] = Field(default_factory=list)
    force: list[str] = Field(default_factory=list)
    ci_timeout: float = Field(1800, ge=0)
    environments: dict[str, EnvironmentSettings]

    @model_validator(mode="after")
    def _environment_names(self) -> RepoSettings:
        if not self.environments:
            raise ValueError("needs at least one environment under `environments`")
        for name in self.environments:
            if not ENV_NAME.fullmatch(name):
                raise ValueError(
                    f"environment name `{name}` must be letters, digits, `.`, `_`, `-` (at most 64)"
                )
        names = ", ".join(self.environments)
        if self.default_environment and self.default_environment not in self.environments:
            raise ValueError(f"default_environment `{self.default_environment}` is not one of: {names}")
        if self.auto_deploy and self.auto_deploy not in self.environments:
            raise ValueError(f"auto_deploy `{self.auto_deploy}` is not one of: {names}")
        return self

    @property
    def default_env(self) -> str:
        return self.default_environment or next(iter(self.environments))

    @property
    def auto_deploy_env(self) -> str:
        return self.auto_deploy or self.default_env


class Settings(_Model):
    """The whole robot.yaml, validated; ``path`` and ``secrets`` are filled in by ``load_settings``."""

    slack: SlackSettings = SlackSettings()
    github: GitHubSettings
    state: StateSettings = StateSettings()
    deploys: DeploySettings = DeploySettings()
    metrics: MetricsSettings | None = None
    logging: LoggingSettings = LoggingSettings()
    repos: dict[str, RepoSettings]
    path: Path = Path("robot.yaml")
    secrets: frozenset[str] = frozenset()

    @field_validator("repos")
    @classmethod
    def _repo_names(cls, repos: dict[str, RepoSettings]) -> dict[str, RepoSettings]:
        if not repos:
            raise ValueError("configure at least one repo")
        for name in repos:
            if not is_valid_repo_name(name):
                raise ValueError(f"`{name}` is not a repo name; {REPO_NAME_HELP}")
        return repos

    def repo(self, name: str) -> tuple[str, RepoSettings]:
        """The configured repo for ``owner/name`` or a unique bare ``name``."""
        if name in self.repos:
            return name, self.repos[name]
        if "/" not in name:
            matches = [full for full in self.repos if full.split("/", 1)[1] == name]
            if len(matches) == 1:
                return matches[0], self.repos[matches[0]]
            if len(matches) > 1:
                raise UnknownRepo(f"`{name}` is ambiguous: {', '.join(matches)}. Use owner/name.")
        raise UnknownRepo(f"Unknown repo `{name}`. Configured repos: {', '.join(self.repos)}.")

    def environment(self, repo: str, env: str | None) -> tuple[str, EnvironmentSettings]:
        """The named (or default) environment of a configured repo."""
        settings = self.repos[repo]
        name = env or settings.default_env
        if name not in settings.environments:
            raise UnknownEnvironment(
                f"Unknown environment `{name}` for {repo}. Environments: {', '.join(settings.environments)}."
            )
        return name, settings.environments[name]

    def folder(self, env: EnvironmentSettings) -> Path:
        """An environment's working folder: relative paths are relative to robot.yaml."""
        base = self.path.resolve().parent
        return base if env.folder is None else (base / env.folder.expanduser())

    def channel(self, repo: str) -> str:
        return self.repos[repo].channel or self.slack.channel

    @property
    def tokens(self) -> frozenset[str]:
        """Every token the robot itself holds (kept out of step environments and output)."""
        values = (self.slack.bot_token, self.slack.app_token, self.github.token)
        return frozenset(v for v in values if v)
