"""Start-up cost of the `robot` CLI: `robot status`, `robot deploy --help`, `robot --help` vs bare Python.

Each command runs as a fresh process, interleaved with `python -c pass` so drift hits both alike;
the figure is the median wall time over the runs and its difference from bare Python (target:
`robot status` ≤ 250 ms over bare Python). Both run as from a user's shell: with a bytecode cache
(in the temp folder), without this sandbox's PYTHONDONTWRITEBYTECODE; one more row shows
`robot status` with this shell as it is (every start compiles bot/ again). Prints one table;
bounded in count and time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_MS = 250.0
TIMEOUT_SECONDS = 30.0


def _config(folder: Path) -> Path:
    path = folder / "robot.yaml"
    path.write_text(
        "github:\n  token: ${GITHUB_TOKEN}\n  api_url: http://127.0.0.1:9/\n"
        f"state:\n  url: sqlite:///{folder / 'robot.db'}\n"
        f"repos:\n  acme/api:\n    folder: {folder}\n    commands: [[\"true\"]]\n"
    )
    return path


def _seed(folder: Path, deploys: int) -> None:
    """A store at the code's schema holding ``deploys`` finished deploys, as `robot status` finds it."""
    sys.path.insert(0, str(ROOT))
    from bot.models import DeployRequest, DeployState, Source
    from bot.store import SqlStore

    store = SqlStore.from_url(f"sqlite:///{folder / 'robot.db'}")
    try:
        for number in range(deploys):
            request = DeployRequest(
                "acme/api", "production", "main", f"{number:040x}", "U012ABCDEF", Source.COMMAND
            )
            deploy, _ = store.create_deploy(request)
            store.finish_deploy(deploy.id, DeployState.SUCCEEDED, None)
    finally:
        store.close()


def _time(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, timeout=TIMEOUT_SECONDS)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[1:])} exited {done.returncode}: {done.stderr.decode()[-300:]}")
    return took


UNCACHED = "robot status, this shell as is (no bytecode cache)"


def _users_shell(shell_env: dict[str, str], pycache: Path) -> dict[str, str]:
    """A user's shell: bytecode cached (in ``pycache``), none of this sandbox's settings."""
    from bench.lib.world import NOT_A_USERS_SHELL

    env = {name: value for name, value in shell_env.items() if name not in NOT_A_USERS_SHELL}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15, help="timed runs per command (default: %(default)s)")
    args = parser.parse_args()
    shell_env = {**os.environ, "GITHUB_TOKEN": "bench-token"}
    with tempfile.TemporaryDirectory(prefix="robot-startup-") as tmp:
        config = str(_config(Path(tmp)))
        _seed(Path(tmp), 20)
        env = _users_shell(shell_env, Path(tmp) / "pycache")
        robot = [sys.executable, "-m", "bot.cli"]
        status = "robot status (20 deploys)"
        commands = {
            status: [*robot, "status", "--config", config],
            "robot deploy --help": [*robot, "deploy", "--help"],
            "robot --help": [*robot, "--help"],
        }
        bare = [sys.executable, "-c", "pass"]
        # Not timed: warm the page cache and fill the bytecode cache.
        for argv in (bare, *commands.values()):
            _time(argv, env)
        samples: dict[str, list[float]] = {name: [] for name in (*commands, UNCACHED)}
        baseline: list[float] = []
        for _ in range(max(1, args.runs)):
            for name, argv in commands.items():
                baseline.append(_time(bare, env))
                samples[name].append(_time(argv, env))
            samples[UNCACHED].append(_time(commands[status], shell_env))
    base = statistics.median(baseline) * 1000
    print(f"median of {args.runs} runs each; bare `python -c pass` {base:.0f} ms")
    print("what | robot | baseline | ratio | target | met?")
    for name, times in samples.items():
        ms = statistics.median(times) * 1000
        over = ms - base
        timed = name.startswith("robot status (")
        target = f"≤ {TARGET_MS:.0f} ms over bare" if timed else "(shown)"
        met = ("yes" if over <= TARGET_MS else "NO") if timed else ""
        shown = f"{ms:.0f} ms (+{over:.0f} ms)"
        print(f"{name} | {shown} | {base:.0f} ms python -c pass | {ms / base:.2f}× | {target} | {met}")


if __name__ == "__main__":
    main()
