"""Merge → announcement latency through `robot run` as its own process, against fake Slack and GitHub.

A sample: main of one repo moves on the fake GitHub (t0); it ends when the announcement's
chat.postMessage reaches the fake Slack. Both fakes live in this process and stamp with the
system-wide monotonic clock, so the robot process's own clock plays no part.
"""

from __future__ import annotations

import random
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.lib.poll_world import CHANNEL, PollWorld, Stamp
from bench.lib.procs import stop_group
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.support.harness import ROOT, environ
from tests.support.wait import wait_for

CONNECT_TIMEOUT = 30.0
STOP_GRACE = 12.0  # `robot run` stops within ~9 s of SIGTERM (DESIGN §6)
KILL_WAIT = 3.0


@dataclass(frozen=True)
class Sample:
    """One merge: seconds from the branch moving to the head poll that saw it, the last lookup, the post."""

    repo: str
    detected: float  # the 200 on the branch (the poll that noticed)
    looked_up: float  # the last GitHub request about the repo before the post
    posted: float  # chat.postMessage arrived at the fake Slack
    lookups: tuple[str, ...]  # GitHub requests about the repo between detection and post


@dataclass
class LatencyResult:
    """Samples at one poll interval, or why there are none."""

    interval: float
    label: str = ""  # what differs from the shipped settings, if anything
    samples: list[Sample] = field(default_factory=list)
    burst: list[Sample] = field(default_factory=list)  # several repos merged at the same moment
    start_seconds: float = 0.0  # process start → Socket Mode connected
    error: str | None = None

    @property
    def median(self) -> float:
        return statistics.median(s.posted for s in self.samples)

    @property
    def maximum(self) -> float:
        return max(s.posted for s in self.samples)

    def median_of(self, part: str) -> float:
        """Median of one phase: ``wait`` (to detection), ``lookup`` (to last lookup), ``slack``."""
        values = {
            "wait": [s.detected for s in self.samples],
            "lookup": [s.looked_up - s.detected for s in self.samples],
            "slack": [s.posted - s.looked_up for s in self.samples],
            "lookups": [float(len(s.lookups)) for s in self.samples],
        }[part]
        return statistics.median(values)

    def worst(self) -> Sample:
        return max(self.samples, key=lambda s: s.posted)


def measure_latency(
    world: PollWorld,
    interval: float,
    samples: int,
    deadline: float,
    seed: int,
    github: Mapping[str, Any] | None = None,
    burst: int = 0,
) -> LatencyResult:
    """Start `robot run` on all of the world's repos, merge ``samples`` times, time each announcement.

    Then, if ``burst``, merge that many repos at once (the last ones in the config: polled last).
    ``github`` overrides settings of robot.yaml's github section (a what-if), named in the label.
    """
    label = ", ".join(f"{k}: {v}" for k, v in (github or {}).items())
    result = LatencyResult(interval, label)
    rng = random.Random(seed)
    with FakeSlack() as slack:
        config = world.config(
            f"latency-{interval:g}-{len(label)}",
            poll_interval=interval,
            github=github,
            slack={
                "bot_token": "${SLACK_BOT_TOKEN}",
                "app_token": "${SLACK_APP_TOKEN}",
                "channel": CHANNEL,
                "api_url": slack.api_url,
            },
        )
        log = config.parent / "robot.log"
        began = time.monotonic()
        proc = _start(config, log)
        try:
            slack.wait_connected(timeout=CONNECT_TIMEOUT)
            result.start_seconds = time.monotonic() - began
            _first_cycle_done(world, began, timeout=CONNECT_TIMEOUT + 3 * interval)
            # Spread over the config order: a repo late in the list is polled later in a cycle.
            step = max(1, len(world.repos) // max(1, samples))
            for index in range(samples):
                if time.monotonic() + 2 * interval + 5 > deadline:
                    result.error = f"stopped after {index} samples to stay within the time budget"
                    break
                # A random phase against the poll cycle, as a real merge has.
                time.sleep(rng.uniform(0, interval))
                repo = world.repos[(index * step + index) % len(world.repos)]
                result.samples += _merged(world, slack, [repo], interval)
            if burst and time.monotonic() + interval + 2 * burst + 2 <= deadline:
                time.sleep(rng.uniform(0, interval))
                result.burst = _merged(world, slack, world.repos[-burst:], interval)
        except (TimeoutError, RuntimeError) as exc:
            result.error = f"{exc}; robot log tail: {_tail(log)}"
        finally:
            stop_group(proc, STOP_GRACE, KILL_WAIT)
    return result


def _start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = environ(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_APP_TOKEN=APP_TOKEN)
    argv = [sys.executable, "-m", "bot.cli", "run", "--config", str(config)]
    with log.open("wb") as out:
        return subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _first_cycle_done(world: PollWorld, since: float, timeout: float) -> None:
    """Wait for a 304 on a branch: the second cycle has begun, so every head is recorded."""

    def second_cycle() -> bool:
        return any(s.status == 304 and "/branches/" in s.path for s in world.github.stamps_since(since))

    try:
        wait_for(second_cycle, timeout, "the first poll cycle")
    except AssertionError:
        raise TimeoutError(f"the robot's first poll cycle did not finish within {timeout:.0f} s") from None


def _merged(world: PollWorld, slack: FakeSlack, repos: list[str], interval: float) -> list[Sample]:
    """Merge into each repo (back to back), wait for every announcement; one sample per repo."""
    merged = [(repo, *world.merge(repo)) for repo in repos]
    since = merged[0][2]

    def post_of(short: str) -> float | None:
        calls = slack.calls_to("chat.postMessage")
        return next((c.at for c in calls if c.at >= since and short in str(c.args)), None)

    def all_posted() -> bool:
        return all(post_of(sha[:7]) is not None for _, sha, _ in merged)

    slack.wait_for(all_posted, timeout=2 * interval + 20 + 5 * len(repos), what=f"announcements of {repos}")
    return [_sample(world, repo, moved, post_of(sha[:7]) or moved) for repo, sha, moved in merged]


def _sample(world: PollWorld, repo: str, moved: float, posted: float) -> Sample:
    """Where the time went between the branch moving and the announcement's post."""
    about = [s for s in world.github.stamps_since(moved) if s.at <= posted and _about(s, repo)]
    detected = next((s.at for s in about if _moved_branch(s)), posted)
    later = [s for s in about if s.at >= detected and not _moved_branch(s)]
    looked_up = later[-1].at if later else detected
    kinds = tuple(_kind(s.path, repo) for s in later)
    return Sample(repo, detected - moved, looked_up - moved, posted - moved, kinds)


def _kind(path: str, repo: str) -> str:
    """A lookup's endpoint without the repo and SHAs: ``compare``, ``commits/pulls``, ``pulls/N``…"""
    rest = path.removeprefix(f"/repos/{repo}").strip("/")
    parts = [p for p in rest.split("/") if not (len(p) >= 40 or "..." in p)]
    return "/".join(parts) or "repo"


def _about(stamp: Stamp, repo: str) -> bool:
    return stamp.path == f"/repos/{repo}" or stamp.path.startswith(f"/repos/{repo}/")


def _moved_branch(stamp: Stamp) -> bool:
    return stamp.path.endswith("/branches/main") and stamp.status == 200


def _tail(log: Path, chars: int = 800) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"
