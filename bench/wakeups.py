"""Wake-ups across processes: request → start latency and an idle `robot run`'s CPU and store load.

One `robot run` (workers 4, the default) serves a store; this process, another robot core on
the same store, requests ``--requests`` deploys one after another (a one-step `true` deploy
each) and reads each one's claim time from the store (started_at - created_at: the same clock).
Before that, the robot idles ``--idle`` s with nothing queued: its CPU ms per second (psutil).
``--tree DIR`` runs the robot from another checkout (e.g. `git archive <base> | tar -x -C DIR`)
to compare before and after. SQLite and, with ``--postgres``, a throwaway PostgreSQL.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

from bot.config import load_settings
from bot.models import DeployState, Source
from bot.wiring import build_core
from tests.fakes.github import FakeGitHub
from tests.fakes.memory import RecordingObserver
from tests.fakes.slack import FakeSlack
from tests.support.harness import ROOT, TOKEN, make_git_repo, slack_user, write_config
from tests.support.postgres import start_postgres
from tests.support.rig import CHANNEL, robot_environ, slack_section

REPO = "acme/web"
POLL_INTERVAL = 30


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def measure(url: str, folder: Path, tree: Path, requests: int, idle: float) -> tuple[float, list[float]]:
    """(idle CPU ms/s of the robot, request → start seconds of each deploy)."""
    with FakeSlack() as slack, FakeGitHub(tokens={TOKEN: "deploy-robot"}) as github:
        github.add_repo(REPO)
        checkout = make_git_repo(folder / "checkout")
        env = {"production": {"folder": str(checkout), "commands": [["true"]]}}
        repos = {REPO: {"channel": CHANNEL, "environments": env}}
        config = write_config(
            folder, github.url, repos, slack=slack_section(slack, fast=False), state={"url": url}
        )
        settings = yaml.safe_load(config.read_text())
        settings["github"]["poll_interval"] = POLL_INTERVAL  # the default: an idle robot, not a busy poller
        config.write_text(yaml.safe_dump(settings, sort_keys=False))
        log = (folder / "robot.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "run", "--config", str(config)],
            cwd=tree,
            env=robot_environ(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        core = None
        try:
            slack.wait_connected(timeout=30)
            time.sleep(3.0)  # past start-up
            robot = psutil.Process(proc.pid)
            before = robot.cpu_times()
            time.sleep(idle)
            after = robot.cpu_times()
            cpu = (after.user + after.system - before.user - before.system) / idle * 1000
            core = build_core(load_settings(config, robot_environ()), robot_environ(), RecordingObserver())
            delays = []
            for _ in range(requests):
                github.push(REPO, "main")
                deploy, _ = core.service.request(REPO, user=slack_user("U0BENCH"), source=Source.COMMAND)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    current = core.store.get_deploy(deploy.id)
                    if current is not None and current.state is DeployState.SUCCEEDED:
                        break
                    time.sleep(0.02)
                else:
                    raise SystemExit(f"deploy #{deploy.id} did not finish; see {folder / 'robot.log'}")
                assert current.started_at is not None and current.created_at is not None
                delays.append((current.started_at - current.created_at).total_seconds())
                time.sleep(0.3)  # the robot idles again before the next request
            return cpu, delays
        finally:
            if core is not None:
                core.close()
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
                print(f"`robot run` ignored SIGTERM for 20 s; killed. Its log ends:\n{_tail(folder)}")
            log.close()


def _tail(folder: Path) -> str:
    return "\n".join((folder / "robot.log").read_text(errors="replace").splitlines()[-15:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=ROOT, help="checkout the robot runs from")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    print(f"robot from {args.tree}")
    with tempfile.TemporaryDirectory() as scratch:
        stores = [("sqlite", f"sqlite:///{scratch}/robot.db")]
        server = start_postgres() if args.postgres else None
        if server is not None:
            stores.append(("postgresql", server.new_database()))
        try:
            for name, url in stores:
                folder = Path(scratch) / name
                folder.mkdir()
                cpu, delays = measure(url, folder, args.tree, args.requests, args.idle)
                p50, p99 = statistics.median(delays), _percentile(delays, 0.99)
                print(
                    f"{name:10} idle CPU {cpu:5.1f} ms/s · request → start p50 {p50 * 1000:6.0f} ms"
                    f" · p99 {p99 * 1000:6.0f} ms · max {max(delays) * 1000:6.0f} ms (n={len(delays)})"
                )
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
