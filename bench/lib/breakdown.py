"""Where a robot deploy's fixed cost goes: start-up, imports, phases seen on stdout, GitHub calls."""

from __future__ import annotations

import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bench.lib.procs import run_drained
from bench.lib.world import CONTEXTS, REPO, World
from bot.github import GitHubGateway
from tests.support.harness import TOKEN

Phases = dict[str, float]


def median_wall(
    argv: Sequence[str], runs: int, *, cwd: Path, env: Mapping[str, str], timeout: float
) -> float:
    """Median wall time of ``runs`` fresh runs of argv."""
    return statistics.median(run_drained(argv, cwd=cwd, env=env, timeout=timeout).wall for _ in range(runs))


DEPLOY_IMPORTS = "import bot.cli, bot.wiring, bot.console"
"""What `robot deploy` imports before its first step (bot.cli itself imports each command's needs lazily)."""


@dataclass(frozen=True)
class ImportCosts:
    """-X importtime of what `robot deploy` imports: total, own time per package, cumulative per module."""

    total_ms: float
    per_package_ms: list[tuple[str, float]]
    cumulative_ms: dict[str, float]
    own_ms: dict[str, float]


def import_costs(cwd: Path, env: Mapping[str, str], timeout: float) -> ImportCosts:
    """Parse `python -X importtime -c DEPLOY_IMPORTS` (first import of each module wins)."""
    done = run_drained(
        [sys.executable, "-X", "importtime", "-c", DEPLOY_IMPORTS], cwd=cwd, env=env, timeout=timeout
    )
    per_package: dict[str, float] = defaultdict(float)
    cumulative: dict[str, float] = {}
    own: dict[str, float] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        head, total, raw_name = line.split("|", 2)
        name = raw_name.strip()
        own[name] = int(head.split(":", 1)[1]) / 1000
        cumulative[name] = int(total) / 1000
        per_package[name.split(".", 1)[0]] += own[name]
    ranked = sorted(per_package.items(), key=lambda kv: kv[1], reverse=True)
    summed = sum(cumulative.get(m, 0.0) for m in ("bot.cli", "bot.wiring", "bot.console"))
    return ImportCosts(summed or float("nan"), ranked, cumulative, own)


def phases(stamped: Sequence[tuple[float, str]], wall: float, steps: int, step_seconds: float) -> Phases:
    """Seconds of each phase of one `robot deploy`, from the moments its stdout lines arrived."""

    def first(prefix: str) -> float | None:
        return next((t for t, line in stamped if line.startswith(prefix)), None)

    marks = {
        "running": first("🚀 Deploy"),
        "step1": first("▶ step 1/"),
        "last_done": first(f"✓ step {steps}"),
        "final": first("✅") or first("❌"),
    }
    out: Phases = {}
    if marks["running"] is not None:
        out["start → deploy claimed (interpreter, imports, config, store, resolve ref)"] = marks["running"]
        if marks["step1"] is not None:
            out["claimed → step 1 (CI gate, create deployment, 2 statuses)"] = (
                marks["step1"] - marks["running"]
            )
    step_extra = []
    for i in range(1, steps + 1):
        began, ended = first(f"▶ step {i}/"), first(f"✓ step {i}")
        if began is not None and ended is not None:
            step_extra.append(ended - began - step_seconds)
    if step_extra:
        out[f"per step, beyond its {step_seconds:g} s of work (spawn, supervise, reap)"] = statistics.mean(
            step_extra
        )
    gaps = [
        b - a
        for i in range(1, steps)
        if (a := first(f"✓ step {i}")) is not None and (b := first(f"▶ step {i + 1}/")) is not None
    ]
    if gaps:
        out["between steps (log flush, next step set-up)"] = statistics.mean(gaps)
    if marks["last_done"] is not None and marks["final"] is not None:
        out["last step → final line (final status, store)"] = marks["final"] - marks["last_done"]
    if marks["final"] is not None:
        out["final line → process exit (close, interpreter shutdown)"] = wall - marks["final"]
    return out


def median_phases(samples: Sequence[Phases]) -> Phases:
    """Per-phase medians over runs (phases missing from a run are skipped)."""
    keys = [k for k in samples[0]] if samples else []
    return {k: statistics.median(s[k] for s in samples if k in s) for k in keys}


def github_latencies(world: World, samples: int) -> dict[str, float]:
    """Median seconds of each GitHub call a deploy makes, through the robot's own gateway."""
    gateway = GitHubGateway(
        TOKEN,
        world.github.url,
        seconds_between_requests=0,
        seconds_between_writes=0,
        timeout=5,
        max_retries=0,
    )
    try:
        results: dict[str, list[float]] = defaultdict(list)

        def timed(name: str, call: Callable[[], object]) -> object:
            started = time.perf_counter()
            value = call()
            results[name].append(time.perf_counter() - started)
            return value

        timed(
            "first call (connect + GET repo + GET commit)",
            lambda: gateway.resolve_ref(REPO, "main"),
        )
        for _ in range(samples):
            timed("resolve ref (1 GET)", lambda: gateway.resolve_ref(REPO, "main"))
            timed("CI state (2 GETs)", lambda: gateway.ci_state(REPO, world.sha, CONTEXTS))
            made_id = timed(
                "create deployment (1 POST)",
                lambda: gateway.create_deployment(REPO, world.sha, "bench", CONTEXTS, {}, "bench probe"),
            )
            assert isinstance(made_id, int)
            status = partial(gateway.set_deployment_status, REPO, made_id, "success", "bench probe")
            timed("deployment status (1 POST)", status)
        return {name: statistics.median(times) for name, times in results.items()}
    finally:
        gateway.close()


# `robot deploy` that freezes the GC before the interpreter exits (a candidate fix, measured).
_FREEZE_LAUNCHER = (
    "import gc, sys\nfrom bot.cli import main\ncode = main(sys.argv[1:])\ngc.freeze()\nsys.exit(code)\n"
)


def what_if_gc_freeze(world: World, runs: int, timeout: float) -> tuple[float, float]:
    """Median wall of a one-`true`-step deploy: as shipped, and with gc.freeze() before exit."""
    config = world.config("what-if", [["true"]], step_timeout=timeout)
    shipped = world.robot_argv(config)
    frozen = [sys.executable, "-c", _FREEZE_LAUNCHER, *shipped[3:]]
    walls: dict[str, list[float]] = {"shipped": [], "frozen": []}
    for attempt in range(runs + 1):
        for name, argv in (("shipped", shipped), ("frozen", frozen)):
            done = run_drained(argv, cwd=world.cwd, env=world.env, timeout=timeout)
            if attempt and done.returncode == 0:
                walls[name].append(done.wall)
    return (
        statistics.median(walls["shipped"]) if walls["shipped"] else float("nan"),
        statistics.median(walls["frozen"]) if walls["frozen"] else float("nan"),
    )
