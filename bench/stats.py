"""Benchmark: `robot stats` over 100,000 seeded deploys (target ≤ 1 s on SQLite and PostgreSQL).

A synthetic year of history (20 repos x production + staging, about 1 in 10 deploys failed, 1 in
30 rolled back, 1 to 4 commits each, a failed deploy's commits shipped again by the next one) is
bulk-inserted into a fresh store. Timed, as the median of --runs: `robot stats` as a process,
wall and CPU time (baseline: `robot status` as a process on the same store; both with a bytecode
cache, as from a user's shell), and the store call alone (baseline: the same call over a
1,000-deploy history, to show how it scales). The figures are printed too.
Always exits 0. Usage (repo root): python bench/stats.py [--deploys 100000] [--runs 5] [--no-postgres]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 1.0
BASELINE_DEPLOYS = 1000
REPOS = 20
SPAN_DAYS = 365
TIMEOUT_SECONDS = 120.0
# The history ends now: `robot stats` as a process reads up to its own now.
UNTIL = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
Row = tuple[str, str, str, str, str, str]

if TYPE_CHECKING:
    from bot.dora import DoraReport
    from tests.support.history import Past


def synthetic_history(deploys: int, seed: int = 12) -> Iterator[Past]:
    """``deploys`` deploys spread evenly over the year before UNTIL, with commits and rollbacks."""
    from bot.models import DeployState
    from tests.support.history import Past

    rng = random.Random(seed)
    step = timedelta(days=SPAN_DAYS) / deploys
    pending: dict[tuple[str, str], list[tuple[str, datetime]]] = {}
    last_ok: dict[tuple[str, str], int] = {}
    commit = 0
    for number in range(1, deploys + 1):
        ended = UNTIL - timedelta(days=SPAN_DAYS) + step * number
        repo = f"acme/app{number % REPOS:02d}"
        env = "production" if rng.random() < 0.5 else "staging"
        place = (repo, env)
        draw = rng.random()
        if draw < 0.03 and place in last_ok:
            # A rollback: undoes the last good deploy there, ships no commits.
            yield Past(number, DeployState.SUCCEEDED, ended, repo, env, rollback_of=last_ok.pop(place))
            continue
        state = DeployState.FAILED if draw < 0.13 else DeployState.SUCCEEDED
        if draw > 0.97:
            state = DeployState.CANCELLED
        queue = pending.setdefault(place, [])
        for _ in range(rng.randint(1, 4)):
            commit += 1
            queue.append((f"{commit:040x}", ended - timedelta(hours=rng.uniform(0.2, 72))))
        shipped = tuple(queue)
        if state is DeployState.SUCCEEDED:
            queue.clear()
            last_ok[place] = number
        yield Past(
            number, state, ended, repo, env, commits=shipped if state is not DeployState.CANCELLED else ()
        )


def _config(folder: Path, url: str) -> Path:
    envs = '      production: {commands: [["true"]]}\n      staging: {commands: [["true"]]}\n'
    repos = "".join(f"  acme/app{n:02d}:\n    environments:\n{envs}" for n in range(REPOS))
    path = folder / "robot.yaml"
    path.write_text(
        "github:\n  token: ${GITHUB_TOKEN}\n  api_url: http://127.0.0.1:9/\n"
        f"state:\n  url: {url}\nrepos:\n{repos}"
    )
    return path


def _seed(url: str, deploys: int) -> float:
    from bot.store import SqlStore
    from tests.support.history import insert_history

    SqlStore.from_url(url).close()  # the schema, migrated
    started = time.perf_counter()
    insert_history(url, synthetic_history(deploys))
    return time.perf_counter() - started


def _median(runs: int, work: Callable[[], object]) -> float:
    """The median wall time of ``runs`` calls of ``work``, after one call that is not timed."""
    return _medians(runs, work)[0]


def _medians(runs: int, work: Callable[[], object]) -> tuple[float, float]:
    """Median wall time and median CPU time of child processes (user + system) over ``runs`` calls.

    CPU time says what a process costs whatever else the machine runs (its 2 cores are shared).
    """
    work()  # warm: page cache, first connection
    walls, cpus = [], []
    for _ in range(max(1, runs)):
        before = _children_cpu()
        started = time.perf_counter()
        work()
        walls.append(time.perf_counter() - started)
        cpus.append(_children_cpu() - before)
    return statistics.median(walls), statistics.median(cpus)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _process(argv: list[str], env: dict[str, str]) -> Callable[[], object]:
    def run() -> None:
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, timeout=TIMEOUT_SECONDS)
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv[3:5])} exited {done.returncode}: {done.stderr.decode()[-300:]}"
            )

    return run


def _users_shell(pycache: Path) -> dict[str, str]:
    """The robot processes' environment, a user's shell: a bytecode cache (filled by the untimed
    first run), none of this sandbox's settings (PYTHONDONTWRITEBYTECODE would compile bot/ anew
    at every start)."""
    from bench.lib.world import NOT_A_USERS_SHELL

    env = {name: value for name, value in os.environ.items() if name not in NOT_A_USERS_SHELL}
    return {**env, "GITHUB_TOKEN": "bench-token", "PYTHONPYCACHEPREFIX": str(pycache)}


def _store_call(config: Path) -> Callable[[], DoraReport]:
    from bot.config import load_settings
    from bot.stats import DoraStats
    from bot.store import SqlStore

    settings = load_settings(config, {"GITHUB_TOKEN": "bench"}, ("slack",))
    store = SqlStore.from_url(settings.state.url, upgrade=False)
    stats = DoraStats(settings, store, clock=lambda: UNTIL)
    return stats.report


def measure(name: str, big_url: str, small_url: str, folder: Path, deploys: int, runs: int) -> list[Row]:
    """Seed both stores, time the four things, print the figures; the table's rows."""
    from bot.dora import report_lines

    seeded = _seed(big_url, deploys)
    _seed(small_url, BASELINE_DEPLOYS)
    print(f"{name}: seeded {deploys} deploys in {seeded:.1f} s")
    (folder / "big").mkdir()
    (folder / "small").mkdir()
    big, small = _config(folder / "big", big_url), _config(folder / "small", small_url)
    env = _users_shell(folder / "pycache")
    robot = [sys.executable, "-m", "bot.cli"]
    stats_process, stats_cpu = _medians(runs, _process([*robot, "stats", "--config", str(big)], env))
    status_process, status_cpu = _medians(runs, _process([*robot, "status", "--config", str(big)], env))
    big_call, small_call = _store_call(big), _store_call(small)
    call = _median(runs, big_call)
    call_small = _median(runs, small_call)
    lines = report_lines(big_call())
    print("\n".join(lines[:17]), f"\n… {len(lines) - 17} more lines (the other repos)")
    print()
    return [
        _row(
            f"robot stats process, {deploys} deploys, {name}", stats_process, "robot status", status_process
        ),
        _row(f"robot stats process CPU (user + sys), {name}", stats_cpu, "robot status", status_cpu),
        _row(f"stats store call, {deploys} deploys, {name}", call, f"{BASELINE_DEPLOYS} deploys", call_small),
    ]


def _row(what: str, seconds: float, baseline_name: str, baseline: float) -> Row:
    return (
        what,
        f"{seconds * 1000:.0f} ms",
        f"{baseline_name}: {baseline * 1000:.0f} ms",
        f"{seconds / baseline:.1f}x" if baseline else "-",
        f"≤ {TARGET_SECONDS * 1000:.0f} ms",
        "yes" if seconds <= TARGET_SECONDS else "NO",
    )


def main(argv: list[str] | None = None) -> int:
    """SQLite, then PostgreSQL where one can be started; print the table. Reports, never fails."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--deploys", type=int, default=100_000, help="deploys seeded (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each (default: %(default)s)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from bench.lib.bootstrap import use_repo_venv

    use_repo_venv("sqlalchemy", "psycopg")
    rows: list[Row] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-stats-") as tmp:
            folder = Path(tmp)
            (folder / "sqlite").mkdir()
            big, small = f"sqlite:///{folder / 'big.db'}", f"sqlite:///{folder / 'small.db'}"
            rows += measure("SQLite", big, small, folder / "sqlite", args.deploys, args.runs)
            if not args.no_postgres:
                rows += _postgres(folder, args.deploys, args.runs)
    except Exception:
        traceback.print_exc()
        print("bench: stopped by the error above; numbers so far follow.")
    header: Row = ("what", "robot", "baseline", "ratio", "target", "met?")
    table = [header, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for index, row in enumerate(table):
        print(" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            print("-+-".join("-" * w for w in widths))
    sys.stdout.flush()
    return 0


def _postgres(folder: Path, deploys: int, runs: int) -> list[Row]:
    from tests.support.postgres import start_postgres, unavailable_reason

    reason = unavailable_reason()
    if reason is not None:
        print(f"PostgreSQL skipped: {reason}")
        return []
    server = start_postgres()
    try:
        (folder / "postgresql").mkdir()
        return measure(
            "PostgreSQL", server.new_database(), server.new_database(), folder / "postgresql", deploys, runs
        )
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
