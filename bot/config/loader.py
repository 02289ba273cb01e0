"""robot.yaml → Settings: read the file, expand `${VAR}`, validate, one-line ConfigErrors."""

from __future__ import annotations

import itertools
import re
import types
import typing
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from bot.config.schema import RepoSettings, Settings
from bot.errors import ConfigError
from bot.text import one_line

# `$${` is a literal `${`; `${NAME}` is expanded; anything else (`$NAME`, a lone `$`) stays.
_PLACEHOLDER = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Expanded values of variables named like this are secrets: redacted from everything we write.
SECRET_NAME = re.compile(
    r"TOKEN|SECRET|PASS|KEY|CREDENTIAL|PRIVATE|AUTH(?!OR)|DSN|COOKIE|SESSION|CERT", re.IGNORECASE
)

# The original robot's deploy keys, written straight under a repo: one "production" environment.
FLAT_KEYS = ("folder", "commands", "ansible_hosts", "ansible_playbook", "timeout", "env")
# Settings fields the loader fills in; a file that sets them is refused.
HIDDEN_KEYS = frozenset({"path", "secrets"})
# A real robot.yaml is a few hundred values a few levels deep. Past these bounds a file is broken
# (or a YAML alias bomb, which expands exponentially) and gets a ConfigError, not a hang or a
# RecursionError. Error messages stay one short line whatever keys and values the file holds.
MAX_DEPTH = 32
MAX_VALUES = 100_000
_MAX_MESSAGE = 500
MAX_PROBLEMS = 20
_MAX_SHOWN = 60


def load_settings(
    path: Path, environ: Mapping[str, str], optional_sections: Collection[str] = ()
) -> Settings:
    """Read, expand and validate robot.yaml; every problem is a one-line ConfigError.

    A variable used only under ``optional_sections`` (e.g. `slack` for the commands that never
    talk to Slack) may be unset: it expands to an empty value instead of stopping the load.
    """
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
    expander.check_all_set(optional_sections)
    data, flat_problems = _flat_forms(expanded)
    try:
        # `base`: key files named by a relative path are found next to robot.yaml.
        settings = Settings.model_validate({**data, "path": path}, context={"base": path.resolve().parent})
    except ValidationError as exc:
        raise ConfigError(_describe(path, exc, flat_problems)) from None
    return settings.model_copy(update={"secrets": frozenset(expander.secrets) | settings.tokens})


@dataclass
class _Expander:
    """Expands `${VAR}` through a parsed robot.yaml, collecting secrets and unset variables."""

    environ: Mapping[str, str]
    path: Path
    secrets: set[str] = field(default_factory=set)
    unset: dict[str, str] = field(default_factory=dict)  # variable → first key path using it
    unset_in: dict[str, set[str]] = field(default_factory=dict)  # variable → top-level sections using it
    counter: Iterator[int] = field(default_factory=itertools.count)

    def expand(self, node: Any, loc: tuple[str, ...] = ()) -> Any:
        # An alias loop (`a: &a [*a]`) is infinitely deep; an alias bomb has too many values.
        if len(loc) > MAX_DEPTH:
            raise _error(self.path, f"{_where(loc[:MAX_DEPTH])}: nested deeper than {MAX_DEPTH} levels")
        if next(self.counter) > MAX_VALUES:
            raise _error(self.path, f"more than {MAX_VALUES} values (YAML aliases expanding?)")
        if isinstance(node, dict):
            for key in node:
                if key in HIDDEN_KEYS and not loc:
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
                shown = one_line(name, _MAX_SHOWN)
                raise _error(self.path, f"{_where(loc)}: `${{{shown}}}` is not a variable name")
            if name not in self.environ:
                # Collected, not raised: a new user is told every variable to set at once.
                self.unset.setdefault(name, _where(loc))
                self.unset_in.setdefault(name, set()).add(loc[0] if loc else "")
                return ""
            value = self.environ[name]
            if SECRET_NAME.search(name) and value:
                self.secrets.add(value)
            return value

        return _PLACEHOLDER.sub(substitute, node)

    def check_all_set(self, optional_sections: Collection[str] = ()) -> None:
        unset = {n: w for n, w in self.unset.items() if not self.unset_in[n] <= set(optional_sections)}
        if len(unset) == 1:
            ((name, where),) = unset.items()
            raise _error(
                self.path, f"{where}: environment variable {name} is not set (write $${{ for a literal ${{)"
            )
        if unset:
            names = ", ".join(f"{name} ({where})" for name, where in unset.items())
            raise _error(self.path, f"environment variables not set: {names}; export them and retry")


def _flat_forms(data: dict[str, Any]) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """``data`` with every flat-form repo rewritten, and what is wrong with those that cannot be.

    A repo whose flat form is wrong becomes None, which fails validation as one error at the
    repo's own place among the file's other errors; ``_describe`` then says what was wrong.
    """
    repos = data.get("repos")
    if not isinstance(repos, dict):
        return data, {}
    rewritten: dict[Any, Any] = {}
    problems: dict[tuple[str, ...], str] = {}
    for name, repo in repos.items():
        try:
            rewritten[name] = _flat_form(repo)
        except ValueError as exc:
            rewritten[name] = None
            problems[("repos", str(name))] = str(exc)
    return {**data, "repos": rewritten}, problems


def _flat_form(repo: Any) -> Any:
    """One repo in the original robot's form (deploy keys straight under it) → one "production"."""
    if not isinstance(repo, dict):
        return repo
    flat = {k: repo[k] for k in FLAT_KEYS if k in repo}
    if not flat:
        return repo
    if "environments" in repo:
        raise ValueError(f"use either `environments` or the flat form ({', '.join(sorted(flat))}), not both")
    rest = {k: v for k, v in repo.items() if k not in flat}
    env: dict[str, Any] = {k: v for k, v in flat.items() if k in ("folder", "commands", "timeout", "env")}
    if "ansible_playbook" in flat or "ansible_hosts" in flat:
        if "ansible_playbook" not in flat:
            raise ValueError("`ansible_hosts` needs `ansible_playbook`")
        env["ansible"] = {
            "playbook": flat["ansible_playbook"],
            "inventory": flat.get("ansible_hosts"),
        }
    return {**rest, "environments": {"production": env}}


def _describe(path: Path, exc: ValidationError, flat_problems: Mapping[tuple[str, ...], str]) -> str:
    """`file: key.path: what is wrong (what is allowed)`; several problems, one line each (≤ 20)."""
    problems = []
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        where = _where(loc) or "(top level)"
        if loc in flat_problems:
            problems.append(f"{where}: {flat_problems[loc]}")
        elif error["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
            problems.append(f"{where}: unknown key{hint}")
        elif error["type"] == "missing":
            problems.append(f"{where}: required key is missing")
        else:
            msg = str(error["msg"]).removeprefix("Value error, ")
            got = error.get("input")
            # A secret's value (a token, a private key) is never quoted back.
            plain = isinstance(got, str | int | float | bool) and not (loc and SECRET_NAME.search(loc[-1]))
            shown = f" (got {one_line(repr(got), _MAX_SHOWN)})" if plain else ""
            problems.append(f"{where}: {msg}{shown}")
    if len(problems) == 1:
        return str(_error(path, problems[0]))
    # Every problem at once (a newcomer fixes them in one pass), one bounded line each.
    lines = [f"{path}: {len(problems)} problems:"]
    lines += [f"  - {one_line(problem, _MAX_MESSAGE)}" for problem in problems[:MAX_PROBLEMS]]
    if len(problems) > MAX_PROBLEMS:
        lines.append(f"  … and {len(problems) - MAX_PROBLEMS} more")
    return "\n".join(lines)


def _error(path: Path, detail: str) -> ConfigError:
    """`file: detail` on one bounded line, whatever newlines or sizes the file's keys and values hold."""
    flat = " ".join(detail.split())
    return ConfigError(f"{path}: {flat if len(flat) <= _MAX_MESSAGE else flat[: _MAX_MESSAGE - 1] + '…'}")


def _where(loc: tuple[str, ...]) -> str:
    """A key path as `a.b.c`, each key shown on one line and cut short."""
    return ".".join(one_line(part, _MAX_SHOWN) for part in loc)


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
        keys = [k for k in model.model_fields if k not in HIDDEN_KEYS]
        return keys + (list(FLAT_KEYS[:4]) if model is RepoSettings else [])
    return []


def _unwrap(annotation: Any) -> Any:
    """``X | None`` → ``X``."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation
