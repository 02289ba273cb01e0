"""robot.yaml → validated, frozen settings (DESIGN §5)."""

from __future__ import annotations

import itertools
import re
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bot.errors import ConfigError, UnknownEnvironment, UnknownRepo
from bot.models import AnsibleStep, CommandStep, Step
from bot.validation import ENV_NAME, REPO_NAME_HELP, is_valid_repo_name

# `$${` is a literal `${`; `${NAME}` is expanded; anything else (`$NAME`, a lone `$`) stays.
_PLACEHOLDER = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Expanded values of variables named like this are secrets: redacted from everything we write.
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|KEY|CREDENTIAL|PRIVATE", re.IGNORECASE)

_FLAT_KEYS = ("folder", "commands", "ansible_hosts", "ansible_playbook", "timeout", "env")
# A real robot.yaml is a few hundred values a few levels deep. Past these bounds a file is broken
# (or a YAML alias bomb, which expands exponentially) and gets a ConfigError, not a hang or a
# RecursionError. Error messages stay one short line whatever keys and values the file holds.
MAX_DEPTH = 32
MAX_VALUES = 100_000
_MAX_MESSAGE = 500
_MAX_SHOWN = 60


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

    @model_validator(mode="before")
    @classmethod
    def _flat_form(cls, data: Any) -> Any:
        # The original robot's form: deploy keys straight under the repo mean one "production".
        if not isinstance(data, dict):
            return data
        flat = {k: data[k] for k in _FLAT_KEYS if k in data}
        if not flat:
            return data
        if "environments" in data:
            raise ValueError(
                f"use either `environments` or the flat form ({', '.join(sorted(flat))}), not both"
            )
        rest = {k: v for k, v in data.items() if k not in flat}
        env: dict[str, Any] = {k: v for k, v in flat.items() if k in ("folder", "commands", "timeout", "env")}
        if "ansible_playbook" in flat or "ansible_hosts" in flat:
            if "ansible_playbook" not in flat:
                raise ValueError("`ansible_hosts` needs `ansible_playbook`")
            env["ansible"] = {
                "playbook": flat["ansible_playbook"],
                "inventory": flat.get("ansible_hosts"),
            }
        return {**rest, "environments": {"production": env}}

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


def load_settings(path: Path, environ: Mapping[str, str]) -> Settings:
    """Read, expand and validate robot.yaml; every problem is a one-line ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file. Copy robot.yaml.example to {path} and edit it, or pass --config PATH."
        ) from None
    except UnicodeDecodeError as exc:  # a ValueError, not an OSError: it needs its own clause
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise _error(path, f"{where}{problem} (not valid YAML)") from None
    except RecursionError:
        # PyYAML composes nested collections recursively: a few hundred `[` exhaust the stack.
        raise ConfigError(f"{path}: nested too deeply (at most {MAX_DEPTH} levels)") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with `github` and `repos` at the top")
    expander = _Expander(environ, path)
    expanded = expander.expand(raw)
    expander.check_all_set()
    try:
        settings = Settings.model_validate({**expanded, "path": path})
    except ValidationError as exc:
        raise ConfigError(_describe(path, exc)) from None
    return settings.model_copy(update={"secrets": frozenset(expander.secrets) | settings.tokens})


@dataclass
class _Expander:
    """Expands `${VAR}` through a parsed robot.yaml, collecting secrets and unset variables."""

    environ: Mapping[str, str]
    path: Path
    secrets: set[str] = field(default_factory=set)
    unset: dict[str, str] = field(default_factory=dict)  # variable → first key path using it
    counter: Iterator[int] = field(default_factory=itertools.count)

    def expand(self, node: Any, loc: tuple[str, ...] = ()) -> Any:
        # An alias loop (`a: &a [*a]`) is infinitely deep; an alias bomb has too many values.
        if len(loc) > MAX_DEPTH:
            raise _error(self.path, f"{_where(loc[:MAX_DEPTH])}: nested deeper than {MAX_DEPTH} levels")
        if next(self.counter) > MAX_VALUES:
            raise _error(self.path, f"more than {MAX_VALUES} values (YAML aliases expanding?)")
        if isinstance(node, dict):
            for key in node:
                if key in ("path", "secrets") and not loc:
                    raise ConfigError(f"{self.path}: `{key}` is not a configuration key")
            return {k: self.expand(v, (*loc, str(k))) for k, v in node.items()}
        if isinstance(node, list):
            return [self.expand(v, (*loc, str(i))) for i, v in enumerate(node)]
        if not isinstance(node, str):
            return node

        def substitute(match: re.Match[str]) -> str:
            if match.group(1) is None:
                return "${"
            name = match.group(1)
            if not _VAR_NAME.fullmatch(name):
                raise _error(self.path, f"{_where(loc)}: `${{{_shown(name)}}}` is not a variable name")
            if name not in self.environ:
                # Collected, not raised: a new user is told every variable to set at once.
                self.unset.setdefault(name, _where(loc))
                return ""
            value = self.environ[name]
            if SECRET_NAME.search(name) and value:
                self.secrets.add(value)
            return value

        return _PLACEHOLDER.sub(substitute, node)

    def check_all_set(self) -> None:
        if len(self.unset) == 1:
            ((name, where),) = self.unset.items()
            raise _error(
                self.path, f"{where}: environment variable {name} is not set (write $${{ for a literal ${{)"
            )
        if self.unset:
            names = ", ".join(f"{name} ({where})" for name, where in self.unset.items())
            raise _error(self.path, f"environment variables not set: {names}; export them and retry")


def _describe(path: Path, exc: ValidationError) -> str:
    """The first validation error as `file: key.path: what is wrong (what is allowed)`."""
    problems = []
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        where = _where(loc) or "(top level)"
        if error["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
            problems.append(f"{where}: unknown key{hint}")
        elif error["type"] == "missing":
            problems.append(f"{where}: required key is missing")
        else:
            msg = str(error["msg"]).removeprefix("Value error, ")
            got = error.get("input")
            shown = f" (got {_shown(repr(got))})" if isinstance(got, str | int | float | bool) else ""
            problems.append(f"{where}: {msg}{shown}")
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return str(_error(path, f"{problems[0]}{more}"))


def _error(path: Path, detail: str) -> ConfigError:
    """`file: detail` on one bounded line, whatever newlines or sizes the file's keys and values hold."""
    flat = " ".join(detail.split())
    return ConfigError(f"{path}: {flat if len(flat) <= _MAX_MESSAGE else flat[: _MAX_MESSAGE - 1] + '…'}")


def _where(loc: tuple[str, ...]) -> str:
    """A key path as `a.b.c`, each key shown on one line and cut short."""
    return ".".join(_shown(part) for part in loc)


def _shown(text: str) -> str:
    """A key or value from the file, one line, at most _MAX_SHOWN characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= _MAX_SHOWN else flat[: _MAX_SHOWN - 1] + "…"


def _allowed_keys(loc: tuple[str, ...]) -> list[str]:
    """The keys a model at ``loc`` accepts, found by walking the settings models."""
    model: Any = Settings
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        field = model.model_fields.get(part)
        if field is None:
            return []
        model = _unwrap(field.annotation)
        if typing.get_origin(model) is dict:
            if not parts:
                return []
            parts.pop(0)
            model = _unwrap(typing.get_args(model)[1])
    if isinstance(model, type) and issubclass(model, BaseModel):
        hidden = {"path", "secrets"}
        keys = [k for k in model.model_fields if k not in hidden]
        return keys + (list(_FLAT_KEYS[:4]) if model is RepoSettings else [])
    return []


def _unwrap(annotation: Any) -> Any:
    """``X | None`` → ``X``."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation
