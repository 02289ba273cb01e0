"""The robot.yaml settings models: validated, frozen, with the lookups the robot uses (DESIGN §5)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from bot.errors import UnknownEnvironment, UnknownRepo
from bot.models import AnsibleStep, AppCredentials, CommandStep, RequiredContext, Step
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
    update_interval: float = Field(1.2, ge=0)
    """At most one message edit this often across the workspace (chat.update: ~50 a minute)."""
    home_interval: float = Field(10.0, ge=0)
    """At most one App Home republish per user this often (a user's own open or click is at once)."""


PEM_START = "-----BEGIN"
# A base64 line of a PEM key is 64 characters; shorter ones (the last) are not worth masking alone.
_MIN_PEM_LINE = 16


# Longer than any sensible path, or several lines: a key in some other form, never echoed back.
_MAX_KEY_PATH = 255


def _read_key_file(value: str, info: ValidationInfo) -> tuple[str, Path]:
    """The text of the key file ``value`` names (relative to robot.yaml's folder)."""
    if len(value) > _MAX_KEY_PATH or "\n" in value.strip():
        # e.g. a base64-encoded PEM from a Kubernetes secret: it is secret, so it is not quoted.
        raise ValueError(
            "is neither PEM text (starting with -----BEGIN) nor a path to a .pem file; "
            "a base64-encoded key must be decoded first"
        )
    path = Path(value).expanduser()
    base = (info.context or {}).get("base")
    if not path.is_absolute() and isinstance(base, Path):
        path = base / path
    try:
        return path.read_text(encoding="utf-8"), path
    except UnicodeDecodeError:
        raise ValueError(f"key file {path} is not a PEM private key (not text)") from None
    except OSError as exc:
        raise ValueError(
            f"cannot read key file {path}: {exc.strerror or exc} "
            f"(give the PEM text, normally from ${{VAR}}, or a path to the .pem file)"
        ) from None


def _check_app_key(pem: str, origin: str) -> None:
    """Refuse anything but the unencrypted RSA key GitHub generates for an App (it signs RS256)."""
    # Only a config with an App pays for importing cryptography (every `robot` command loads it).
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except TypeError:
        raise ValueError(f"{origin} is encrypted; give the key GitHub generated, unencrypted") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError(f"{origin} is not a PEM private key") from None
    if not isinstance(key, RSAPrivateKey):
        raise ValueError(f"{origin} is not an RSA key (GitHub App keys are RSA)")


class GitHubSettings(_Model):
    """GitHub credentials (a token or a GitHub App), API host, polling and client throttling."""

    token: str | None = None
    # A GitHub App instead of a token: its id, its private key (PEM text or a path to the .pem)
    # and optionally the one installation to use (else each repo owner's is looked up).
    app_id: int | None = Field(None, gt=0)
    private_key: str | None = Field(None, repr=False)
    installation_id: int | None = Field(None, gt=0)
    api_url: str = "https://api.github.com"
    poll_interval: float = Field(30, ge=1)
    # GitHub asks for serial requests and a pause before writes only; paced reads made a merge
    # announcement miss "poll interval + 1 s" (bench/poll_cost.py), so reads are unpaced.
    seconds_between_requests: float = Field(0.0, ge=0)
    seconds_between_writes: float = Field(1.0, ge=0)
    timeout: int = Field(15, ge=1)  # PyGithub takes whole seconds
    max_retries: int = Field(5, ge=0, le=20)

    @field_validator("private_key")
    @classmethod
    def _pem_text_or_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        """The key's PEM text: given inline, or read from the file the value names."""
        if value is None:
            return None
        if value.lstrip().startswith(PEM_START):
            _check_app_key(value, "the key")
            return value
        text, path = _read_key_file(value, info)
        _check_app_key(text, f"key file {path}")
        return text

    @model_validator(mode="after")
    def _one_credential(self) -> GitHubSettings:
        app = self.app_id is not None or self.private_key is not None
        if self.token is not None and app:
            raise ValueError(
                "set either `github.token` or a GitHub App (`github.app_id` + `github.private_key`), not both"
            )
        if self.token is None and not app:
            raise ValueError(
                "set `github.token`, or `github.app_id` + `github.private_key` to act as a GitHub App"
            )
        if app and (self.app_id is None or self.private_key is None):
            missing = "github.private_key" if self.private_key is None else "github.app_id"
            raise ValueError(
                f"a GitHub App needs both `github.app_id` and `github.private_key`; set `{missing}`"
            )
        if self.installation_id is not None and not app:
            raise ValueError(
                "`github.installation_id` belongs to a GitHub App (`github.app_id` + `github.private_key`)"
            )
        return self

    @property
    def app(self) -> AppCredentials | None:
        """The GitHub App to act as, when configured instead of a token."""
        if self.app_id is None or self.private_key is None:
            return None
        return AppCredentials(self.app_id, self.private_key, self.installation_id)

    @property
    def secrets(self) -> tuple[str, ...]:
        """The token or the App key, and each line of the key (step output arrives line by line)."""
        found = [v for v in (self.token, self.private_key) if v]
        for line in (self.private_key or "").splitlines():
            line = line.strip()
            if len(line) >= _MIN_PEM_LINE and not line.startswith("-----"):
                found.append(line)
        return tuple(found)


class StateSettings(_Model):
    """Where the store lives, and how robot processes sharing it tell each other they are alive."""

    url: str = "sqlite:///robot.db"
    # `robot run` prunes older deploys' logs daily; None keeps them all.
    keep_logs_days: float | None = Field(None, gt=0, le=36_600)
    heartbeat: float = Field(5, gt=0)
    lease: float = Field(30, gt=0)

    @model_validator(mode="after")
    def _lease_outlasts_heartbeats(self) -> StateSettings:
        # One late or failed beat must not make a live process look dead.
        if self.lease <= 2 * self.heartbeat:
            raise ValueError(
                f"lease ({self.lease:g} s) must be more than twice heartbeat ({self.heartbeat:g} s), "
                "else a live robot whose heartbeat is late would lose its running deploys"
            )
        return self


class DeploySettings(_Model):
    """How the deploy service runs: parallelism, CI re-check pace, kill grace, shutdown deadline."""

    workers: int = Field(4, ge=1, le=64)
    ci_poll_interval: float = Field(15, gt=0)
    kill_grace: float = Field(10, ge=0)
    # SIGTERM → exit of `robot run`, everything included: cancelling, killing, recording, Slack.
    stop_timeout: float = Field(10, ge=3, le=600)
    max_log_lines: int = Field(20_000, ge=100)  # kept per deploy: the first and last halves


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


# A Slack user id (U…, or W… on Enterprise Grid) or a user-group id (S…).
_SLACK_ID = re.compile(r"[UWS][A-Z0-9]{2,20}")


class ApprovalSettings(_Model):
    """`approvals:` of an environment: how many people must approve a deploy there, who may, how long."""

    required: int = Field(1, ge=1, le=10)
    approvers: list[str] = Field(default_factory=list)  # empty: any of the repo's deployers
    timeout: float = Field(3600, gt=0, le=7 * 24 * 3600)

    @field_validator("approvers")
    @classmethod
    def _slack_ids(cls, approvers: list[str]) -> list[str]:
        for who in approvers:
            if not _SLACK_ID.fullmatch(who):
                raise ValueError(
                    f"`{who}` is not a Slack user id (U…/W…) or user-group id (S…); "
                    "approvers are ids, not names (a profile's ⋮ → Copy member ID)"
                )
        if len(set(approvers)) != len(approvers):
            raise ValueError("lists someone twice")
        return approvers

    @model_validator(mode="after")
    def _enough_approvers(self) -> ApprovalSettings:
        groups = any(who.startswith("S") for who in self.approvers)
        if self.approvers and not groups and self.required > len(self.approvers):
            raise ValueError(
                f"required ({self.required}) is more than the approvers listed ({len(self.approvers)}): "
                "no deploy could ever be approved"
            )
        return self


class EnvironmentSettings(_Model):
    """One deploy target of a repo: where and how to run its steps."""

    folder: Path | None = None
    timeout: float = Field(600, gt=0)
    deploy_timeout: float = Field(3600, gt=0)
    env: dict[str, str] = Field(default_factory=dict)
    commands: list[list[str]] | None = None
    ansible: AnsibleSettings | None = None
    approvals: ApprovalSettings | None = None
    # Counted in the DORA figures (`robot stats`); by default only `production` is.
    dora: bool = False

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


class ContextSettings(_Model):
    """One required context written out: `{name: build, app: github-actions, accept: [skipped]}`."""

    name: str = Field(min_length=1)
    app: str | None = Field(None, min_length=1)  # the GitHub App (slug) whose check runs count
    accept: list[Literal["neutral", "skipped"]] = Field(default_factory=list)


class RepoSettings(_Model):
    """One repo: its branch, gate, who may deploy, and its environments."""

    branch: str = "main"
    channel: str | None = None
    default_environment: str | None = None
    on_merge: Literal["announce", "deploy", "ignore"] = "announce"
    auto_deploy: str | None = None
    required_contexts: list[ContextSettings] = Field(default_factory=list)
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

    @property
    def dora_environments(self) -> list[str]:
        """The environments the DORA figures count: those with `dora: true`, else `production`,
        else the repo's only environment; none when it has several and none is either."""
        flagged = [name for name, env in self.environments.items() if env.dora]
        if flagged:
            return flagged
        if "production" in self.environments:
            return ["production"]
        return list(self.environments) if len(self.environments) == 1 else []

    @field_validator("required_contexts", mode="before")
    @classmethod
    def _context_names(cls, value: Any) -> Any:
        # `build` is short for `{name: build}`.
        return [{"name": c} if isinstance(c, str) else c for c in value] if isinstance(value, list) else value

    @property
    def gate(self) -> tuple[RequiredContext, ...]:
        """The CI gate: each required context with its app pin and accepted conclusions."""
        return tuple(RequiredContext(c.name, c.app, frozenset(c.accept)) for c in self.required_contexts)

    @property
    def context_names(self) -> list[str]:
        """The required contexts' names, as a GitHub Deployment's `required_contexts`."""
        return [c.name for c in self.gate]


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
        """Every token and key the robot itself holds (kept out of step environments and output)."""
        values = (self.slack.bot_token, self.slack.app_token, *self.github.secrets)
        return frozenset(v for v in values if v)
