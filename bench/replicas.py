"""Three `robot run` replicas on one PostgreSQL under load, with an owner and the poller leader SIGKILLed.

One run, bounded (about 70 s): 5 repos x 2 environments, 60 `/deploy` commands sent through
randomly picked replicas' Socket Mode connections, 30 merges (2 repos auto-deploy to staging),
a deploy's owner SIGKILLed mid-step and later the poller's leader, each replaced so 3 stay up.
Steps append `start|end <id> <repo:env> <time> <robot pid>` to a file and sleep 0.3-1 s. Then
10 s of idleness: CPU per replica (a bare Bolt app that only acks, connected alongside, is the
baseline) and store transactions per second. Prints one table; stops every process it started.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent

if TYPE_CHECKING:
    from bench.lib.poll_world import StampedGitHub
    from bench.lib.replica_figures import Run
    from bench.lib.replica_fleet import Fleet, Replica, RoutingSlack
    from bot.store import SqlStore

REQUESTS = 60
MERGES = 30
REQUEST_EVERY = 0.75  # seconds between `/deploy` commands
MERGE_EVERY = 1.6  # seconds between merges
OWNER_KILL_AT = 15  # from this request on: SIGKILL the first non-leader seen mid-step
LEADER_KILL_AT = 38  # before this request, SIGKILL the poller's leader
DRIVE_BUDGET = 110.0  # seconds from the start: stop sending commands after this
SETTLE_TIMEOUT = 40.0  # for the queue to drain and every merge to be announced
IDLE_SECONDS = 10.0
ANSWER_TIMEOUT = 15.0
START_TIMEOUT = 40.0
USER = "U0ALICE01"
QUEUED = re.compile(r"Deploy #(\d+) queued")


@dataclass(frozen=True)
class Request:
    """One `/deploy` sent: when (unix time), to which replica, what it answered."""

    deploy: int | None
    sent: float
    replica_pid: int | None
    answer: str


@dataclass
class Kill:
    """A SIGKILL and what followed it."""

    killed_at: float  # monotonic
    dead_at: float  # monotonic, once it was reaped
    replica: int
    deploy: int | None = None
    taken_after: float | None = None  # seconds until the store said the deploy ended
    final_state: str = ""


@dataclass
class Outcome:
    """What one run measured."""

    requests: list[Request] = field(default_factory=list)
    owner_kill: Kill | None = None
    leader_kill: Kill | None = None
    settled: bool = False
    cpu_ms_per_s: dict[str, float] = field(default_factory=dict)
    bare_ms_per_s: float | None = None
    xacts_per_s: float | None = None


def _answer(slack: RoutingSlack, envelope: str) -> str:
    ack = slack.wait_ack(envelope, timeout=ANSWER_TIMEOUT)
    text = str((ack.payload or {}).get("text", ""))
    if text.startswith("⏳"):
        text = str(slack.wait_response(envelope, timeout=ANSWER_TIMEOUT).get("text", ""))
    return text


def _until(check: Callable[[], bool], timeout: float, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


class Drive:
    """The load, the kills and the waits of one run."""

    def __init__(
        self, fleet: Fleet, github: StampedGitHub, store: SqlStore, runs: Path, seed: int, began: float
    ) -> None:
        from bench.lib.replica_fleet import Merges

        self.fleet = fleet
        self.slack = fleet.slack
        self.github = github
        self.store = store
        self.runs = runs
        self.random = random.Random(seed)
        self.began = began
        self.merges = Merges(github)
        self.outcome = Outcome()
        self.request_every = REQUEST_EVERY
        self._stop_merging = threading.Event()
        self._watchers: list[threading.Thread] = []

    def run(self) -> Outcome:
        from bench.lib.replica_fleet import ENVS, REPOS

        for _ in range(3):
            self.fleet.start(START_TIMEOUT)
        if not _until(lambda: self.fleet.leader() is not None, START_TIMEOUT):
            raise RuntimeError("no replica took the poller")
        if not _until(lambda: all(self.store.get_head(r) for r in REPOS), START_TIMEOUT, 0.2):
            raise RuntimeError("the first poll did not record every head")
        merging = threading.Thread(target=self._merge_loop, name="merges", daemon=True)
        merging.start()
        order = [(repo, env) for repo in REPOS for env in ENVS] * (REQUESTS // (len(REPOS) * len(ENVS)))
        self.random.shuffle(order)
        try:
            self._requests(order)
        except BaseException:
            self._stop_merging.set()
            raise
        finally:
            merging.join(timeout=MERGES * MERGE_EVERY + 10)
            for watcher in self._watchers:
                watcher.join(timeout=30)
        self.outcome.settled = _until(self._settled, SETTLE_TIMEOUT, 0.2)
        return self.outcome

    def _requests(self, order: list[tuple[str, str]]) -> None:
        for index, (repo, env) in enumerate(order):
            if time.monotonic() - self.began > DRIVE_BUDGET + REQUESTS * (self.request_every - REQUEST_EVERY):
                break
            slot = time.monotonic() + self.request_every
            if index == LEADER_KILL_AT:
                self._kill_the_leader()
            self.github.push(repo, f"r{index}")
            sent = time.time()
            envelope = self.slack.send_slash_command(
                command="/deploy", text=f"{repo}@r{index} to {env}", user_id=USER, channel_id="C0HERE"
            )
            replica = self.fleet.by_connection(self.slack.envelope(envelope).connection_id)
            try:
                text = _answer(self.slack, envelope)
            except TimeoutError:
                text = "(no answer)"
            found = QUEUED.search(text)
            deploy = int(found.group(1)) if found else None
            self.outcome.requests.append(Request(deploy, sent, replica.pid if replica else None, text))
            while time.monotonic() < slot:
                if index >= OWNER_KILL_AT and self.outcome.owner_kill is None and self._kill_an_owner():
                    continue
                time.sleep(0.02)

    def _merge_loop(self) -> None:
        from bench.lib.replica_fleet import REPOS

        for number in range(MERGES):
            if self._stop_merging.wait(MERGE_EVERY):
                return
            self.merges.merge(REPOS[number % len(REPOS)])

    def _kill_an_owner(self) -> bool:
        """SIGKILL a replica (not the leader) in the middle of a step, if one runs; watch the takeover."""
        from bench.lib.replica_figures import read_marks
        from bench.lib.replica_fleet import step_seconds

        leader = self.fleet.leader()
        candidates = {r.pid: r for r in self.fleet.live() if r is not leader}
        marks = read_marks(self.runs)
        ended = {m.deploy for m in marks if m.kind == "end"}
        now = time.time()
        running = [
            m
            for m in marks
            if m.kind == "start"
            and m.deploy not in ended
            and m.robot_pid in candidates
            and now < m.at + step_seconds(m.deploy) - 0.15
        ]
        if not running:
            return False
        replica = candidates[running[-1].robot_pid]
        kill = Kill(*self.fleet.kill(replica), replica.index, running[-1].deploy)
        self.outcome.owner_kill = kill
        self._watch(kill)
        self._replace(replica)
        return True

    def _kill_the_leader(self) -> None:
        leader = self.fleet.leader()
        if leader is None:
            return
        self.outcome.leader_kill = Kill(*self.fleet.kill(leader), leader.index)
        self._replace(leader)

    def _replace(self, gone: Replica) -> None:
        with contextlib.suppress(TimeoutError):
            self.slack.wait_for(lambda: gone.connection not in self.slack.connection_ids(), 5.0, "close")
        self.fleet.start(START_TIMEOUT)

    def _watch(self, kill: Kill) -> None:
        """In the background: seconds from the kill until the store holds the deploy final."""
        from bot.models import DeployState

        def ended() -> bool:
            deploy = self.store.get_deploy(kill.deploy) if kill.deploy else None
            if deploy is None or deploy.state in (DeployState.QUEUED, DeployState.RUNNING):
                return False
            kill.taken_after = time.monotonic() - kill.killed_at
            kill.final_state = deploy.state.value
            return True

        watcher = threading.Thread(target=_until, args=(ended, 30.0, 0.05), name="takeover", daemon=True)
        watcher.start()
        self._watchers.append(watcher)

    def _settled(self) -> bool:
        from bench.lib.replica_fleet import announcements
        from bot.models import DeployState

        active = self.store.list_deploys(states=[DeployState.QUEUED, DeployState.RUNNING], limit=1)
        heard = announcements(self.slack, self.merges.titles)
        return not active and all(heard.values())

    def idle(self, bare_argv: list[str], pg_counter: Callable[[], int]) -> None:
        """CPU of each live replica and of a bare Bolt app, and store transactions, over idleness."""
        from bench.lib.replica_fleet import cpu_seconds
        from tests.support.rig import robot_environ

        with (self.fleet.folder / "bare.log").open("wb") as log:
            bare = subprocess.Popen(
                bare_argv, cwd=ROOT, env=robot_environ(), stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        try:
            before_connections = self.slack.total_connections
            with contextlib.suppress(TimeoutError):
                self.slack.wait_connected(timeout=START_TIMEOUT, total=before_connections + 1)
            time.sleep(2.0)  # let the bare app finish starting up
            leader = self.fleet.leader()
            procs = {f"robot {r.index}{' (leader)' if r is leader else ''}": r.pid for r in self.fleet.live()}
            procs["bare"] = bare.pid
            first = {name: cpu_seconds(pid) for name, pid in procs.items()}
            xacts = pg_counter()
            start = time.monotonic()
            time.sleep(IDLE_SECONDS)
            took = time.monotonic() - start
            xacts = pg_counter() - xacts - 1  # the counter's own read is a transaction
            used = {name: (cpu_seconds(pid) - first[name]) * 1000 / took for name, pid in procs.items()}
        finally:
            bare.terminate()
            try:
                bare.wait(timeout=10)
            except subprocess.TimeoutExpired:
                bare.kill()
                bare.wait(timeout=5)
        self.outcome.bare_ms_per_s = used.pop("bare")
        self.outcome.cpu_ms_per_s = used
        self.outcome.xacts_per_s = xacts / took / max(1, len(used))


def _pg_counter(port: int, database: str) -> Callable[[], int]:
    import psycopg

    def count() -> int:
        conninfo = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
            row = conn.execute(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", (database,)
            ).fetchone()
        return int(row[0]) if row else 0

    return count


def _failover(github: StampedGitHub, kill: Kill | None) -> float | None:
    """Kill → the next branch poll (only the poller reads branches; 50 ms skips one in flight)."""
    if kill is None:
        return None
    after = [s.at for s in github.stamps_since(kill.dead_at + 0.05) if "/branches/" in s.path]
    return after[0] - kill.killed_at if after else None


def _report(drive: Drive, outcome: Outcome) -> None:
    from bench.lib.replica_figures import overlaps, percentile, read_marks, run_twice, runs_of
    from bench.lib.replica_fleet import LEASE, POLL_INTERVAL, announcements
    from bot.models import DeployState

    runs = runs_of(read_marks(drive.runs))
    deploys = drive.store.list_deploys(limit=10_000)
    ended = {d.id: d.finished_at.timestamp() for d in deploys if d.finished_at}
    interrupted = {d.id for d in deploys if d.state is DeployState.INTERRUPTED}
    states: dict[str, int] = {}
    for deploy in deploys:
        states[deploy.state.value] = states.get(deploy.state.value, 0) + 1
    first_start: dict[int, Run] = {}
    for run in runs:
        first_start.setdefault(run.deploy, run)
    here: list[float] = []
    across: list[float] = []
    waits: list[float] = []
    for request in outcome.requests:
        started = first_start.get(request.deploy or -1)
        if started is None:
            continue
        same = started.robot_pid == request.replica_pid
        (here if same else across).append(started.start - request.sent)
        before = [
            r.end for r in runs if r.where == started.where and r.end is not None and r.end <= started.start
        ]
        waits.append(started.start - max([request.sent, *before]))
    heard = announcements(drive.slack, drive.merges.titles)
    twice_heard = sum(1 for n in heard.values() if n > 1)
    missed = sum(1 for n in heard.values() if n == 0)
    queued = sum(1 for r in outcome.requests if r.deploy is not None)
    overlap = overlaps(runs, ended)
    doubled = run_twice(runs, interrupted)
    failover = _failover(drive.github, outcome.leader_kill)
    owner = outcome.owner_kill

    def met(ok: bool) -> str:
        return "yes" if ok else "NO"

    print(
        f"{len(outcome.requests)} /deploy sent ({queued} queued), {len(drive.merges.titles)} merges, "
        f"{len(deploys)} deploys in the store ({', '.join(f'{n} {s}' for s, n in sorted(states.items()))}), "
        f"{len(runs)} step runs; settled: {outcome.settled}"
    )
    print("what | robot | baseline | ratio | target | met?")
    print(
        f"overlapping deploys in one environment ({len(runs)} step runs, 10 envs) | {len(overlap)} | | | 0 | "
        f"{met(not overlap)}"
    )
    print(
        f"merges announced twice ({len(heard)} merges; {missed} never announced) | {twice_heard} | | | 0 | "
        f"{met(twice_heard == 0 and missed == 0)}"
    )
    print(f"deploys whose step ran twice | {len(doubled)} | | | 0 | {met(not doubled)}")
    if owner and owner.taken_after is not None:
        target = LEASE + 5
        print(
            f"owner SIGKILLed mid-step → deploy #{owner.deploy} {owner.final_state} in the store | "
            f"{owner.taken_after:.2f} s | | | ≤ lease + 5 s ({target:g} s) | "
            f"{met(owner.taken_after <= target and owner.final_state == 'interrupted')}"
        )
    else:
        print(
            f"owner SIGKILLed mid-step → interrupted | {'not seen' if owner else 'no step to kill'} | | | "
            f"≤ lease + 5 s | NO"
        )
    target = LEASE + POLL_INTERVAL
    shown = f"{failover:.2f} s" if failover is not None else "no poll seen"
    print(
        f"poller leader SIGKILLed → next branch poll (lease {LEASE:g} s, poll {POLL_INTERVAL:g} s) | "
        f"{shown} | | | ≤ {target:g} s | {met(failover is not None and failover <= target)}"
    )
    latencies = (
        ("all", here + across),
        ("the replica asked ran it", here),
        ("another replica ran it", across),
        ("counted from when its environment was free", waits),
    )
    for label, values in latencies:
        if values:
            p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
            goal = "≤ 1 s" if label == "all" else "(info)"
            verdict = met(p99 <= 1.0) if label == "all" else ""
            print(
                f"/deploy sent → step start p50 / p99, {label} ({len(values)}) | "
                f"{p50 * 1000:.0f} / {p99 * 1000:.0f} ms | | | {goal} | {verdict}"
            )
    if outcome.cpu_ms_per_s and outcome.bare_ms_per_s is not None:
        cpu = outcome.cpu_ms_per_s
        mean = sum(cpu.values()) / len(cpu)
        spread = ", ".join(f"{name} {v:.1f}" for name, v in cpu.items())
        bare = outcome.bare_ms_per_s
        ratio = f"{mean / bare:.0f}×" if bare else ""
        print(
            f"idle CPU per replica over {IDLE_SECONDS:g} s, mean of {len(cpu)} ({spread}) | "
            f"{mean:.1f} ms/s | {bare:.1f} ms/s (bare Bolt app, only acks) | {ratio} | (info) |"
        )
    if outcome.xacts_per_s is not None:
        print(
            f"idle store transactions per replica (pg_stat_database commits + rollbacks) | "
            f"{outcome.xacts_per_s:.1f} /s | | | (info) |"
        )
    for row in _phase_rows(drive, outcome, first_start):
        print(row)
    if drive.slack.server_errors:
        print(f"fake Slack errors: {len(drive.slack.server_errors)}", file=sys.stderr)


def _phase_rows(drive: Drive, outcome: Outcome, first_start: Mapping[int, Run]) -> list[str]:
    """/deploy → step start split into phases per deploy (bench/lib/replica_phases.py)."""
    from bench.lib.replica_fleet import REPOS
    from bench.lib.replica_phases import DeployFacts, phase_rows, timelines, unix_offset

    made = {
        int(d.request.get("payload", {}).get("robot_deploy_id", -1)): d
        for repo in REPOS
        for d in drive.github.deployments(repo)
        if isinstance(d.request.get("payload"), dict)
    }
    facts = []
    for deploy in drive.store.list_deploys(limit=10_000):
        deployment = made.get(deploy.id)
        facts.append(
            DeployFacts(
                deploy.id,
                deploy.sha,
                deploy.created_at.timestamp() if deploy.created_at else None,
                deploy.started_at.timestamp() if deploy.started_at else None,
                deployment.id if deployment else None,
                deployment.created_at.timestamp() if deployment else None,
            )
        )
    sent = {r.deploy: r.sent for r in outcome.requests if r.deploy is not None}
    starts = {deploy: run.start for deploy, run in first_start.items()}
    lines = timelines(sent, starts, facts, drive.github.stamps_since(0.0), unix_offset())
    return phase_rows(lines)


def _dump_slack(slack: RoutingSlack, path: Path) -> None:
    """Every channel message, for reading a run afterwards."""
    from tests.support.rig import CHANNEL

    lines = [
        f"{m.ts} thread={m.thread_ts} {m.text!r} {json.dumps(m.blocks)}" for m in slack.messages(CHANNEL)
    ]
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--seed", type=int, default=9, help="environments and replicas picked (default: %(default)s)"
    )
    parser.add_argument(
        "--default-pacing",
        action="store_true",
        help="pace Slack writes and the GitHub client as shipped (Slack: 1 s per channel)",
    )
    parser.add_argument(
        "--github-writes",
        type=float,
        metavar="SECONDS",
        help="github.seconds_between_writes (default: the shipped value with --default-pacing, else 0)",
    )
    parser.add_argument(
        "--request-every",
        type=float,
        default=REQUEST_EVERY,
        metavar="SECONDS",
        help="seconds between `/deploy` commands (default: %(default)s; 3 keeps a deploy's 4 GitHub"
        " writes within GitHub's 80 content-creating requests a minute)",
    )
    parser.add_argument("--keep", type=Path, help="copy the run's folder (logs, runs file) here at the end")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from bench.lib.bootstrap import use_repo_venv

    use_repo_venv("github", "sqlalchemy", "slack_bolt", "psycopg")
    from bench.lib.app_process import bare_argv, kill_leftovers
    from bench.lib.replica_fleet import Fleet, RoutingSlack, new_github, write_world
    from bot.store import SqlStore
    from tests.support.postgres import start_postgres, unavailable_reason

    reason = unavailable_reason()
    if reason:
        print("what | robot | baseline | ratio | target | met?")
        print(f"3 replicas on PostgreSQL | not run: {reason} | | | | NO")
        return
    began = time.monotonic()
    server = start_postgres()
    try:
        github, slack = new_github(), RoutingSlack(args.seed)
        with tempfile.TemporaryDirectory(prefix="robot-replicas-") as tmp, github, slack:
            folder = Path(tmp)
            url = server.new_database()
            config, runs = write_world(
                folder,
                github,
                slack,
                url,
                default_pacing=args.default_pacing,
                github_writes=args.github_writes,
            )
            store = SqlStore.from_url(url)
            fleet = Fleet(config, folder, slack)
            drive = Drive(fleet, github, store, runs, args.seed, began)
            drive.request_every = args.request_every
            try:
                outcome = drive.run()
                drive.idle(bare_argv(slack, 10.0), _pg_counter(server.port, url.rsplit("/", 1)[1]))
                _report(drive, outcome)
            except BaseException:
                for replica in fleet.replicas:
                    print(f"--- robot {replica.index} log tail:\n{replica.text()[-1200:]}", file=sys.stderr)
                raise
            finally:
                fleet.stop_all()
                store.close()
                kill_leftovers(folder)
                if args.keep:
                    shutil.copytree(folder, args.keep, dirs_exist_ok=True)
                    _dump_slack(slack, args.keep / "slack.txt")
    finally:
        server.stop()
    print(f"whole run: {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
