"""Benchmark: a step printing ~100 MB through `robot deploy`, with the per-deploy log cap and without.

The robot keeps `deploys.max_log_lines` (default 20,000) lines per deploy; the baseline is the
same robot with the cap lifted (what it did before), run in the same bench. Reports peak RSS of
the robot process tree and how much the SQLite database (file + WAL) grew per deploy.
Targets: peak RSS ≤ 150 MB, database growth ≤ 10 MB per deploy. Loopback only, bounded.
Usage (repo root): python bench/big_log.py [--lines 1500000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RSS_TARGET_MB = 150.0
GROWTH_TARGET_MB = 10.0
TIMEOUT_SECONDS = 300.0


def _db_bytes(config: Path) -> int:
    return sum(p.stat().st_size for p in config.parent.glob("robot.db*"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=1_500_000, help="lines printed (~66 bytes each)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from bench.lib.bootstrap import use_repo_venv

    use_repo_venv("github", "sqlalchemy")
    from bench.lib.procs import run_measured
    from bench.lib.volume import printer_argv
    from bench.lib.world import World

    with tempfile.TemporaryDirectory(prefix="bench-biglog-") as tmp:
        world = World(Path(tmp)).start()
        try:
            argv = printer_argv(args.lines, paced=False)
            alone = run_measured(argv, cwd=world.cwd, env=world.env, timeout=TIMEOUT_SECONDS)
            # Warm-up: the first robot run fills the bytecode cache; neither measured run pays it.
            warm = world.config("warm-up", [["true"]], step_timeout=TIMEOUT_SECONDS)
            run_measured(world.robot_argv(warm), cwd=world.cwd, env=world.env, timeout=TIMEOUT_SECONDS)
            rows = {}
            for name, cap in (("capped", 20_000), ("uncapped", args.lines + 1000)):
                config = world.config(name, [argv], step_timeout=TIMEOUT_SECONDS, max_log_lines=cap)
                # A first quiet deploy creates the schema, so the growth measured is the log's.
                before = _db_bytes(config) if config.with_name("robot.db").exists() else 0
                run = run_measured(
                    world.robot_argv(config), cwd=world.cwd, env=world.env, timeout=TIMEOUT_SECONDS
                )
                grown = (_db_bytes(config) - before) / 1e6
                rows[name] = (run.peak_rss_mb, grown, run.drained.returncode, run.wall)
        finally:
            world.stop()
    printed_mb = alone.drained.newlines * 67 / 1e6
    alone_mb = alone.peak_rss_mb
    print(f"a step printing {args.lines:,} lines (~{printed_mb:.0f} MB); printer alone {alone_mb:.0f} MB RSS")
    print("what | robot | baseline | ratio | target | met?")
    (rss, grown, code, wall), (rss0, grown0, code0, wall0) = rows["capped"], rows["uncapped"]
    ok = "yes" if code == 0 else f"NO (exit {code})"
    uncapped = f"uncapped: exit {code0} / {wall0:.1f} s"
    print(f"robot deploy exit / wall | {ok} / {wall:.1f} s | {uncapped} | | exit 0 | {ok}")
    rss_met = "yes" if rss <= RSS_TARGET_MB else "NO"
    rss_target = f"≤ {RSS_TARGET_MB:.0f} MB"
    ratio = f"{rss / rss0:.2f}×"
    baseline = f"{rss0:.0f} MB uncapped"
    print(f"peak RSS, robot tree | {rss:.0f} MB | {baseline} | {ratio} | {rss_target} | {rss_met}")
    growth_met = "yes" if grown <= GROWTH_TARGET_MB else "NO"
    print(
        f"database growth per deploy | {grown:.1f} MB | {grown0:.1f} MB uncapped | {grown / grown0:.3f}× "
        f"| ≤ {GROWTH_TARGET_MB:.0f} MB | {growth_met}"
    )


if __name__ == "__main__":
    main()
