"""DESIGN §7's import rules, checked on the source: each heavy or outside library has one home."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "handlers")


@dataclass(frozen=True)
class Import:
    """One import statement: which module imports what, and whether at module level."""

    module: str
    target: str
    top_level: bool
    line: int


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports_in(path: Path) -> Iterator[Import]:
    module = _module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))

    def walk(node: ast.AST, top_level: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(module, alias.name, top_level, child.lineno)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    package = module.split(".")
                    if path.name != "__init__.py":
                        package = package[:-1]
                    package = package[: len(package) - (child.level - 1)]
                    base = ".".join([*package, base] if base else package)
                yield Import(module, base, top_level, child.lineno)
                # `from bot import x` may name a submodule
                for alias in child.names:
                    yield Import(module, f"{base}.{alias.name}", top_level, child.lineno)
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                yield from walk(child, False)
            elif _type_checking_block(child):
                continue
            else:
                yield from walk(child, top_level)

    yield from walk(tree, True)


def _all_imports() -> list[Import]:
    found: list[Import] = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found.extend(_imports_in(path))
    return found


IMPORTS = _all_imports()
MODULES = {_module_name(p) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def _within(module: str, home: str) -> bool:
    return module == home or module.startswith(home + ".")


def _roots(target: str) -> str:
    return target.split(".", 1)[0]


# library (top-level import name) → the modules or packages allowed to import it
HOMES: dict[str, tuple[str, ...]] = {
    "slack_bolt": ("bot.app", "handlers"),
    "handlers": ("bot.app", "handlers"),
    "ansible_runner": ("bot.steps.ansible",),
    "apscheduler": ("bot.scheduling",),
    "github": ("bot.github",),
    "requests": ("bot.github",),
    "urllib3": ("bot.github",),
    "alembic": ("bot.store",),
    "sqlalchemy": ("bot.store",),
    # robot.yaml's GitHub App key is checked when the file is loaded; PyGithub signs with it.
    "cryptography": ("bot.config",),
    "prometheus_client": ("bot.metrics",),
    # Slack's payloads and client stop at the Slack adapter and the app factory.
    "slack_sdk": ("bot.slack", "bot.app"),
}


@pytest.mark.parametrize("library", sorted(HOMES))
def test_library_is_imported_only_in_its_home(library: str) -> None:
    homes = HOMES[library]
    strays = sorted(
        f"{i.module}:{i.line} imports {i.target}"
        for i in IMPORTS
        if _roots(i.target) == library and not any(_within(i.module, h) for h in homes)
    )
    assert not strays, f"{library} belongs in {', '.join(homes)} only:\n" + "\n".join(strays)


def test_values_ports_and_errors_import_no_adapter() -> None:
    """models, errors and ports are the vocabulary: of the robot they import only each other."""
    vocabulary = {"bot.models", "bot.errors", "bot.ports"}
    strays = sorted(
        f"{i.module}:{i.line} imports {i.target}"
        for i in IMPORTS
        if i.module in vocabulary and i.target in MODULES and i.target not in vocabulary | {"bot"}
    )
    assert not strays, "\n".join(strays)


def test_bot_never_imports_handlers_outside_the_app_factory() -> None:
    strays = sorted(
        f"{i.module}:{i.line} imports {i.target}"
        for i in IMPORTS
        if _within(i.module, "bot") and _roots(i.target) == "handlers" and not _within(i.module, "bot.app")
    )
    assert not strays, "\n".join(strays)


def test_no_import_cycle_at_module_level() -> None:
    """Module-level imports between our modules form no cycle (lazy imports inside functions may)."""
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for i in IMPORTS:
        if i.top_level and i.target in MODULES and i.target != i.module:
            edges[i.module].add(i.target)
    # A package's __init__ is imported with any of its modules: that is not a cycle by itself.
    for m in MODULES:
        edges[m] = {t for t in edges[m] if not _within(m, t)}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for module in sorted(MODULES):
        if module not in state and (cycle := visit(module)):
            pytest.fail("import cycle: " + " → ".join(cycle))
