"""The `robot` command line: check, deploy, changes, status, stats, db, run.

Each command imports what it uses, inside its function: `robot --help` and `robot status`
start in a fraction of the time the whole robot (Bolt, PyGithub, rich, Alembic) takes to import.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import getpass
import logging
import os
import signal
import sys
import threading
import time
import unicodedata
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from bot.errors import BotError

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.models import Approval, Deploy, Lock
    from bot.processes import Heartbeat

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
# `robot run` is gone this long after deploys.stop_timeout at the latest, whatever still holds it.
EXIT_MARGIN_SECONDS = 0.5


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `robot` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    from bot.config import load_settings

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        # Only `robot run` talks to Slack: the others load without its tokens.
        optional = () if args.command == "run" else ("slack",)
        settings = load_settings(Path(args.config), os.environ, optional)
        code: int = args.func(settings, args)
    except BotError as exc:
        print(f"robot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robot", description="Deploy robot: chat-ops deploys.")
    parser.add_argument("--version", action=_PrintVersion, nargs=0, help="print the robot's version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, help_text: str, under: argparse._SubParsersAction[argparse.ArgumentParser] = sub
    ) -> argparse.ArgumentParser:
        p = under.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", default="robot.yaml", help="path to robot.yaml (default: %(default)s)")
        return p

    run = command("run", "the Slack bot: Socket Mode + merge poller")
    run.set_defaults(func=_run)

    check = command("check", "validate robot.yaml and what it points at")
    check.add_argument("--online", action="store_true", help="also try the tokens and each repo")
    check.set_defaults(func=_check)

    deploy = command("deploy", "one deploy from this terminal, with live progress")
    deploy.add_argument("target", metavar="REPO[@REF]", help="owner/name or a unique name, optional @ref")
    deploy.add_argument("--env", help="environment (default: the repo's default_environment)")
    deploy.add_argument("--force", action="store_true", help="skip the CI gate (and any approval)")
    deploy.add_argument(
        "--rollback",
        action="store_true",
        help="redeploy the SHA that succeeded there before the current one (no CI gate)",
    )
    deploy.add_argument(
        "--approved-by",
        metavar="NAME",
        help="who approved it, where the environment wants approvals (recorded as given)",
    )
    deploy.set_defaults(func=_deploy)

    changes = command("changes", "what deploying the repo's branch head now would ship (deploys nothing)")
    changes.add_argument("repo", metavar="REPO", help="owner/name or a unique name")
    changes.add_argument("--env", help="environment (default: the repo's default_environment)")
    changes.set_defaults(func=_changes)

    status = command("status", "deploy history from the store")
    status.add_argument("repo", nargs="?", help="only this repo")
    status.add_argument(
        "--limit", type=int, default=20, help="rows to show, 1 to 10000 (default: %(default)s)"
    )
    _history_filters(status)
    status.set_defaults(func=_status)

    stats = command("stats", "DORA figures from the deploy history: frequency, lead time, failures, recovery")
    stats.add_argument("repo", nargs="?", help="only this repo")
    stats.add_argument(
        "--env", help="count this environment (default: those with `dora: true`, else production)"
    )
    stats.add_argument("--days", type=_days, default=30, help="the window, in days (default: %(default)s)")
    stats.add_argument("--json", action="store_true", help="print JSON for dashboards (README: DORA figures)")
    stats.set_defaults(func=_stats)

    prune = command("prune", "delete the logs of deploys older than a duration; keep their history")
    prune.add_argument("--older-than", required=True, metavar="AGE", help="e.g. 90d, 12w, 36h")
    prune.set_defaults(func=_prune)

    db = sub.add_parser("db", help="the store's schema revision", description="the store's schema revision")
    db_actions = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    current = command("current", "the database's schema revision and this robot's", db_actions)
    current.set_defaults(func=_db_current)
    upgrade = command("upgrade", "bring the database's schema to this robot's revision", db_actions)
    upgrade.set_defaults(func=_db_upgrade)
    return parser


class _PrintVersion(argparse.Action):
    """`--version`, looked up only when asked: reading package metadata costs every start otherwise."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        print(f"robot {_version()}")
        parser.exit()


def _version() -> str:
    """The installed package's version, else the source tree's (pyproject.toml)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("deploy-robot")
    except PackageNotFoundError:
        return _source_version()


def _source_version() -> str:
    import tomllib

    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        return str(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"])
    except (OSError, KeyError, ValueError):
        return "unknown"


def _run(settings: Settings, args: argparse.Namespace) -> int:
    missing = [k for k in ("bot_token", "app_token") if not getattr(settings.slack, k)]
    if missing:
        keys = " and ".join(f"slack.{k}" for k in missing)
        raise BotError(
            f"{settings.path}: set {keys} (e.g. bot_token: ${{SLACK_BOT_TOKEN}} with an xoxb- token, "
            "app_token: ${SLACK_APP_TOKEN} with an xapp- token); see README 'Create the Slack app'."
        )
    from bot.app import build_robot  # only `robot run` pays for importing Bolt
    from bot.hardening import harden
    from bot.logs import configure_logging
    from bot.redact import Redactor

    harden(settings.tokens)
    configure_logging(settings.logging, Redactor.for_environment(settings.secrets, os.environ))
    stop = threading.Event()
    gone: list[str] = []
    previous = {
        s: signal.signal(s, lambda signum, frame: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)
    }
    robot = build_robot(settings, os.environ)
    watch = _watch_database(settings, gone, stop)
    gc.enable()  # built: from here on the robot runs for days
    try:
        robot.start()
        logging.getLogger("bot").info("deploy robot connected; serving %d repo(s)", len(settings.repos))
        while not stop.wait(1.0):
            pass
    finally:
        _exit_by(time.monotonic() + settings.deploys.stop_timeout + EXIT_MARGIN_SECONDS, gone)
        if watch is not None:
            watch.stop()
        robot.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return EXIT_FAILED if gone else EXIT_OK


def _watch_database(settings: Settings, gone: list[str], stop: threading.Event) -> Heartbeat | None:
    """Check the SQLite file each heartbeat; when it was deleted or replaced, say so in one line,
    note it in ``gone`` and set ``stop`` (the command then stops as on a signal, and fails)."""
    from bot.processes import DatabaseFileWatch
    from bot.store.engine import sqlite_path

    path = sqlite_path(settings.state.url)
    if path is None:
        return None

    def told(problem: str) -> None:
        print(f"robot: {problem}", file=sys.stderr, flush=True)
        gone.append(problem)
        stop.set()

    return DatabaseFileWatch(path).watch(settings.state.heartbeat, told)


def _exit_by(deadline: float, gone: list[str]) -> None:
    """The last resort of `robot run`'s shutdown: leave at ``deadline`` even if a thread holds on."""

    def leave() -> None:
        time.sleep(max(0.0, deadline - time.monotonic()))
        print("robot: stopping took longer than deploys.stop_timeout; exiting now", file=sys.stderr)
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(EXIT_FAILED if gone else EXIT_OK)

    threading.Thread(target=leave, name="exit-deadline", daemon=True).start()


def _check(settings: Settings, args: argparse.Namespace) -> int:
    from bot.checks import run_checks

    problems = 0
    for result in run_checks(settings, os.environ, online=args.online):
        print(f"{'✓' if result.ok else '✗'} {result.what}: {result.detail}")
        problems += not result.ok
    if problems:
        print(f"{problems} problem(s) in {settings.path}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{settings.path} is ready.")
    return EXIT_OK


def _deploy(settings: Settings, args: argparse.Namespace) -> int:
    from bot.console import ConsoleObserver
    from bot.hardening import harden
    from bot.models import Actor, ActorKind, DeployState, ProcessKind, Source
    from bot.wiring import build_core

    harden(settings.tokens)
    gc.enable()
    repo, _, ref = args.target.partition("@")
    if args.rollback:
        _check_rollback_args(args, ref)
    observer = ConsoleObserver()
    core = build_core(settings, os.environ, observer)
    cancel = threading.Event()
    gone: list[str] = []
    watch = _watch_database(settings, gone, cancel)
    try:
        # Registered first: what a dead robot left in this environment is dealt with (taken
        # over, or the environment locked) before this deploy asks for it.
        core.service.register(ProcessKind.DEPLOY)
        user = Actor(ActorKind.CLI, getpass.getuser())
        approved_by = Actor(ActorKind.CLI, args.approved_by) if args.approved_by else None
        if args.rollback:
            deploy, created = core.service.rollback(
                repo, args.env, user=user, source=Source.CLI, approved_by=approved_by
            )
        else:
            deploy, created = core.service.request(
                repo,
                ref=ref or None,
                env=args.env,
                user=user,
                source=Source.CLI,
                force=args.force,
                approved_by=approved_by,
            )
        observer.follow(deploy.id)
        if core.changes is not None:
            observer.list_changes(core.changes)
        if created and deploy.rollback_of is not None:
            print(_rollback_queued(deploy))
        elif not created:
            print(f"Deploy #{deploy.id} of the same commit is already {deploy.state.value}; following it.")
        else:
            print(
                f"Deploy #{deploy.id} queued: {deploy.repo}@{deploy.ref} ({deploy.short_sha}) → {deploy.env}"
            )
        final = _run_in_foreground(core.service.run_one, deploy, cancel)
    finally:
        if watch is not None:
            watch.stop()
        core.close()
    if gone:
        return EXIT_FAILED
    if final.state is DeployState.SUCCEEDED:
        return EXIT_OK
    return EXIT_INTERRUPTED if final.state is DeployState.CANCELLED else EXIT_FAILED


def _check_rollback_args(args: argparse.Namespace, ref: str) -> None:
    """`--rollback` picks its SHA itself and skips the gate by right: no @ref, no --force."""
    if ref:
        raise BotError(f"--rollback picks the SHA itself; give the repo without @{ref}")
    if args.force:
        raise BotError("--rollback needs no --force: its SHA succeeded there before, so it is not gated")


def _rollback_queued(deploy: Deploy) -> str:
    return (
        f"⏪ Rollback #{deploy.id} queued: {deploy.repo} → {deploy.env} back to {deploy.short_sha} "
        f"(undoing #{deploy.rollback_of}; no CI gate, it succeeded there before)"
    )


def _changes(settings: Settings, args: argparse.Namespace) -> int:
    from bot.changes import summarize, summary_lines
    from bot.text import terminal_safe
    from bot.wiring import lay_foundation

    base = lay_foundation(settings, os.environ)
    try:
        preview = base.changes.preview(args.repo, args.env)
    finally:
        if base.opened_store is not None:
            base.opened_store.close()
    changes = preview.changes
    url = base.changes.compare_url(preview.repo, changes)
    print(terminal_safe(f"{preview.repo}@{preview.branch} ({changes.head_sha[:7]}) → {preview.env}"))
    for line in summary_lines(summarize(changes, preview.env), url):
        print(terminal_safe(line))
    return EXIT_OK


def _run_in_foreground(
    run_one: Callable[[int, threading.Event], Deploy], deploy: Deploy, cancel: threading.Event
) -> Deploy:
    """Run the deploy on a worker thread so Ctrl-C / SIGTERM here (or ``cancel``) become a clean cancel."""
    result: list[Deploy] = []
    worker = threading.Thread(target=lambda: result.append(run_one(deploy.id, cancel)), daemon=True)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        cancel.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker.start()
        while worker.is_alive():
            worker.join(0.2)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if not result:
        raise BotError(f"deploy #{deploy.id} ended without a result; see `robot status`.")
    return result[0]


def _history_filters(status: argparse.ArgumentParser) -> None:
    """`robot status`'s filters for scripts (checked in ``_status``: bad values exit 2)."""
    status.add_argument("--env", help="only this environment")
    status.add_argument(
        "--state", action="append", metavar="STATE", help="only these states (repeat, or a comma list)"
    )
    status.add_argument(
        "--since", metavar="WHEN", help="created since: 2026-12-01, 2026-12-01T13:05:00Z, 7d, 12h"
    )
    status.add_argument("--json", action="store_true", help='print {"deploys": [...], "locks": [...]}')


def _status_env(settings: Settings, repo: str | None, env: str | None) -> str | None:
    """``--env`` checked against the repo's environments (or every configured one)."""
    if env is None:
        return None
    if repo is not None:
        return settings.environment(repo, env)[0]
    known = list(dict.fromkeys(e for rs in settings.repos.values() for e in rs.environments))
    if env not in known:
        from bot.errors import UnknownEnvironment

        raise UnknownEnvironment(f"Unknown environment `{env}`. Environments: {', '.join(known)}.")
    return env


def _status(settings: Settings, args: argparse.Namespace) -> int:
    from bot.history import check_limit, history_document, parse_since, parse_states
    from bot.store import SqlStore

    repo = settings.repo(args.repo)[0] if args.repo else None
    env = _status_env(settings, repo, args.env)
    states = parse_states(args.state)
    since = parse_since(args.since, datetime.now(UTC))
    limit = check_limit(args.limit)
    store = SqlStore.from_url(settings.state.url, upgrade=False)
    try:
        schema = store.schema_state()
        if schema.current is not None:
            schema.require_head()
            deploys = store.list_deploys(repo=repo, env=env, states=states, limit=limit, since=since)
            locks = [lock for lock in store.list_locks(repo) if env is None or lock.env == env]
            approvals = store.list_approvals([d.id for d in deploys])
        else:
            deploys, locks, approvals = [], [], {}
    finally:
        store.close()
    if args.json:
        import json

        print(json.dumps(history_document(deploys, locks, approvals), ensure_ascii=False, indent=2))
        return EXIT_OK
    if not deploys:
        print(f"No deploys recorded{' for ' + repo if repo else ''} yet.")
    else:
        rows = [_status_row(d, approvals.get(d.id, ())) for d in deploys]
        if sys.stdout.isatty():
            _print_rich_table(rows)
        else:
            _print_plain_table(rows)
    _print_locks(locks)
    return EXIT_OK


def _days(text: str) -> int:
    """`--days`: a whole number of days the DORA window spans."""
    from bot.dora import MAX_DAYS

    try:
        days = int(text)
    except ValueError:
        days = 0
    if not 1 <= days <= MAX_DAYS:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of days from 1 to {MAX_DAYS}, got {text!r}"
        )
    return days


def _stats(settings: Settings, args: argparse.Namespace) -> int:
    import json

    from bot.dora import build_report, report_json, report_lines
    from bot.models import DoraHistory
    from bot.stats import DoraStats, dora_targets
    from bot.store import SqlStore

    store = SqlStore.from_url(settings.state.url, upgrade=False)
    try:
        schema = store.schema_state()
        if schema.current is not None:
            schema.require_head()
            report = DoraStats(settings, store).report(args.repo, args.env, args.days)
        else:  # no database yet: the figures of an empty history
            targets, uncounted = dora_targets(settings, args.repo, args.env)
            now = datetime.now(UTC)
            report = build_report(DoraHistory(), targets, now, args.days, uncounted)
    finally:
        store.close()
    if args.json:
        print(json.dumps(report_json(report), ensure_ascii=False, indent=2))
    else:
        from bot.text import terminal_safe

        print("\n".join(terminal_safe(line) for line in report_lines(report)))
    return EXIT_OK


def _print_locks(locks: list[Lock]) -> None:
    """The locks that hold, after the history: who, since when, for how much longer, why."""
    if not locks:
        return
    from bot.text import fmt_remaining

    now = datetime.now(UTC)
    print("\nLocked:")
    for lock in locks:
        left = lock.remaining_seconds(now)
        line = (
            f"🔒 {lock.repo} {lock.env}: locked by {lock.locked_by} since {lock.locked_at:%Y-%m-%d %H:%M} UTC"
        )
        line += f" {fmt_remaining(left)}" if left is not None else ""
        line += f": {lock.reason}" if lock.reason else ""
        print(_plain(line))


STATUS_COLUMNS = ("#", "repo", "env", "sha", "state", "who", "when", "took", "why")


def _status_row(d: Deploy, approvals: Sequence[Approval] = ()) -> list[str]:
    from bot.models import ROLLBACK_MARK

    took = d.duration_seconds
    why = d.waiting_for or d.error or ""
    if approvals:
        # Who approved it, as the store keeps them (kind:name): a terminal's name is not a Slack id.
        approved = "approved by " + ", ".join(a.approver for a in approvals)
        why = f"{approved}; {why}" if why else approved
    cells = [
        str(d.id),
        d.repo,
        d.env,
        d.short_sha,
        f"{d.state.icon} {d.state.value}" + (f" {ROLLBACK_MARK}" if d.rollback_of is not None else ""),
        d.requested_by,
        d.created_at.strftime("%Y-%m-%d %H:%M") if d.created_at else "",
        f"{took:.1f} s" if took is not None else "",
        why,
    ]
    return [_plain(cell) for cell in cells]


def _plain(text: str) -> str:
    """A cell as plain text: one line, no escape sequences or other control characters."""
    from bot.text import one_line, terminal_safe

    return one_line(terminal_safe(text))


def _print_rich_table(rows: list[list[str]]) -> None:
    from rich.console import Console  # only a terminal gets (and pays for) rich's layout
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False)
    for column in STATUS_COLUMNS[:-1]:
        table.add_column(column, no_wrap=True)
    table.add_column(STATUS_COLUMNS[-1], overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # Text: `[/srv/app]` in an error is not markup
    Console(highlight=False).print(table)


def _print_plain_table(rows: list[list[str]]) -> None:
    """Columns two spaces apart, for pipes and files: no wrapping, no escape sequences."""
    table = [list(STATUS_COLUMNS), *rows]
    widths = [max(_cells(row[i]) for row in table) for i in range(len(STATUS_COLUMNS) - 1)]
    for row in table:
        cells = [cell + " " * (width - _cells(cell)) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())


def _cells(text: str) -> int:
    """Terminal columns ``text`` takes: wide characters and emoji count two."""
    width = 0
    for char in text:
        if char == "\ufe0f":
            width += 1  # emoji presentation widens the narrow symbol before it (⚠️)
        elif unicodedata.category(char) not in ("Mn", "Me", "Cf"):
            width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def _prune(settings: Settings, args: argparse.Namespace) -> int:
    from bot.store import SqlStore
    from bot.validation import parse_duration

    age = parse_duration(args.older_than)
    before = datetime.now(UTC) - age
    store = SqlStore.from_url(settings.state.url)
    try:
        pruned = store.prune_logs(before)
    finally:
        store.close()
    when = f"{before:%Y-%m-%d %H:%M} UTC"
    print(f"Deleted the logs of {pruned} deploy(s) that ended before {when}; their history stays.")
    return EXIT_OK


def _db_current(settings: Settings, args: argparse.Namespace) -> int:
    from bot.store import SqlStore

    store = SqlStore.from_url(settings.state.url, upgrade=False)
    try:
        schema = store.schema_state()
    finally:
        store.close()
    if schema.newer:
        raise schema.newer_error()
    print(f"database: {schema.label}")
    print(f"robot:    {schema.head}")
    if schema.behind:
        print("behind: run `robot db upgrade` (robot run and robot deploy also upgrade at start)")
        return EXIT_FAILED
    print("up to date")
    return EXIT_OK


def _db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    from bot.store import SqlStore

    store = SqlStore.from_url(settings.state.url, upgrade=False)
    try:
        before, after = store.upgrade_schema()
    finally:
        store.close()
    if before == after:
        print(f"schema already at {after.label}: up to date")
    else:
        print(f"schema upgraded: {before.label} → {after.label}")
    return EXIT_OK


def entry() -> None:
    """The `robot` console script: main(), then a quick exit."""
    # Start-up allocates hundreds of thousands of objects (imports, pydantic models) and none
    # of them are garbage: collecting during it is wasted time. The commands that run long
    # (`run`, `deploy`) turn the collector back on once they are built.
    gc.disable()
    code = main()
    # The work is done: moving every object out of the collector's reach lets the
    # interpreter skip a last full collection on the way out (about 100 ms measured).
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    entry()
