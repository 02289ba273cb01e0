"""Benchmark: the GitHub calls a deploy's change list adds (target: 1 per new SHA pair, 0 cached).

The real core (build_core: SQLite store, PyGithub gateway, command steps) against the fake
GitHub on 127.0.0.1. --deploys deploys of one repo + environment, in rounds of four: push a
commit and deploy it (a new SHA pair), roll back to the previous commit (new pair), roll forward
(the first pair again) and back (the second again). Every request the fake answers is counted,
once with change lists on and once with them off (the pipeline without them: the baseline).
Always exits 0. Usage (repo root): python bench/change_list.py [--deploys 40]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPO = "acme/api"
Row = tuple[str, str, str, str, str, str]


@dataclass
class Run:
    """What one run of the deploys cost at the fake GitHub."""

    requests_new: int = 0  # every request made while deploying a SHA pair first seen
    requests_repeat: int = 0  # the same, for pairs some deploy compared before
    compares_new: int = 0
    compares_repeat: int = 0
    deploys_new: int = 0
    deploys_repeat: int = 0
    seconds: float = 0.0


def run(tmp: Path, deploys: int, change_lists: bool) -> Run:
    """Deploy ``deploys`` times in rounds of four; count the fake GitHub's requests per kind."""
    from bot.config import load_settings
    from bot.models import DeployState, Source
    from bot.wiring import build_core
    from tests.fakes.github import FakeGitHub
    from tests.fakes.memory import RecordingObserver
    from tests.support.harness import TOKEN, environ, slack_user, write_config

    result = Run()
    with FakeGitHub(tokens={TOKEN: "deploy-robot"}) as github:
        github.add_repo(REPO)
        folder = tmp / "checkout"
        folder.mkdir()
        envs = {"production": {"folder": str(folder), "commands": [["true"]]}}
        config = write_config(tmp, github.url, {REPO: {"environments": envs}})
        core = build_core(load_settings(config, environ()), environ(), RecordingObserver())
        if not change_lists:
            core.pipeline.changes = None
        try:
            started = time.monotonic()
            shas: list[str] = [github.head(REPO, "main")]
            seen: set[tuple[str, str]] = set()
            current: str | None = None
            for n in range(deploys):
                step = n % 4
                if step == 0:
                    shas.append(github.push(REPO, "main", message=f"Change {n}", author="alice"))
                    target = shas[-1]
                else:
                    target = shas[-2] if step in (1, 3) else shas[-1]
                pair = (current or "", target)
                repeat = pair in seen
                counted = current is not None  # the first deploy compares nothing: not counted
                before, compares = len(github.requests), github.count("GET", "/compare/")
                deploy, _ = core.service.request(
                    REPO, ref=target, user=slack_user("U1"), source=Source.CLI
                )
                final = core.service.run_one(deploy.id, threading.Event(), poll=0.01)
                if final.state is not DeployState.SUCCEEDED:
                    raise RuntimeError(f"deploy #{final.id} ended {final.state.value}: {final.error}")
                spent = len(github.requests) - before
                compared = github.count("GET", "/compare/") - compares
                if not counted:
                    pass
                elif repeat:
                    result.requests_repeat += spent
                    result.compares_repeat += compared
                    result.deploys_repeat += 1
                else:
                    result.requests_new += spent
                    result.compares_new += compared
                    result.deploys_new += 1
                if counted:
                    seen.add(pair)
                current = target
            result.seconds = time.monotonic() - started
        finally:
            core.close()
    return result


def _per(total: int, count: int) -> float:
    return total / count if count else 0.0


def rows(on: Run, off: Run) -> list[Row]:
    """The table: requests per deploy with and without change lists, and compares alone."""
    new_on, new_off = _per(on.requests_new, on.deploys_new), _per(off.requests_new, off.deploys_new)
    rep_on = _per(on.requests_repeat, on.deploys_repeat)
    rep_off = _per(off.requests_repeat, off.deploys_repeat)
    compares_new = _per(on.compares_new, on.deploys_new)
    compares_rep = _per(on.compares_repeat, on.deploys_repeat)
    added_new, added_rep = new_on - new_off, rep_on - rep_off
    return [
        (
            "GitHub calls per deploy, new SHA pair",
            f"{new_on:.2f}",
            f"{new_off:.2f}",
            f"{new_on / new_off:.2f}x" if new_off else "-",
            "+1 call",
            "yes" if added_new <= 1.0 + 1e-9 else "NO",
        ),
        (
            "GitHub calls per deploy, SHA pair seen before",
            f"{rep_on:.2f}",
            f"{rep_off:.2f}",
            f"{rep_on / rep_off:.2f}x" if rep_off else "-",
            "+0 calls",
            "yes" if added_rep <= 1e-9 else "NO",
        ),
        (
            "compare calls per deploy (new / seen before)",
            f"{compares_new:.2f} / {compares_rep:.2f}",
            "0 / 0",
            "-",
            "≤ 1 / 0",
            "yes" if compares_new <= 1.0 and compares_rep == 0 else "NO",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    """Run with change lists on, then off; print the table. Reports, never fails."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--deploys", type=int, default=40, help="deploys per run (default: %(default)s)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from bench.lib.bootstrap import use_repo_venv

    use_repo_venv("github", "sqlalchemy")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-changes-warm-") as warm_dir:
            run(Path(warm_dir), 4, change_lists=True)  # imports and first connections, not counted
        with tempfile.TemporaryDirectory(prefix="bench-changes-on-") as on_dir:
            on = run(Path(on_dir), args.deploys, change_lists=True)
        with tempfile.TemporaryDirectory(prefix="bench-changes-off-") as off_dir:
            off = run(Path(off_dir), args.deploys, change_lists=False)
    except Exception:
        traceback.print_exc()
        print("bench: stopped by the error above; no numbers.")
        return 0
    print(f"{args.deploys} deploys per run: {on.deploys_new} of new SHA pairs, {on.deploys_repeat} repeats")
    print(f"wall time: {on.seconds:.1f} s with change lists, {off.seconds:.1f} s without")
    print()
    header: Row = ("what", "robot", "baseline", "ratio", "target", "met?")
    table = [header, *rows(on, off)]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for index, row in enumerate(table):
        print(" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            print("-+-".join("-" * w for w in widths))
    sys.stdout.flush()
    os._exit(0)  # the fake GitHub's and the store's daemon threads need no orderly exit


if __name__ == "__main__":
    sys.exit(main())
