"""Profile one `robot deploy` on all its threads and summarise where the CPU went."""

from __future__ import annotations

import pstats
import re
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from bench.lib.procs import run_drained

PROFILER = Path(__file__).resolve().parent / "profiled_cli.py"
ROOT = PROFILER.parents[2]
# Built-ins that only block (a thread waiting for a pipe, a lock, a child): not costs to cut.
_WAITING = ("'acquire'", "'poll'", "'select'", "sleep", "waitpid", "'wait'")

SPINE_SHARE = 0.6
_LIB = re.compile(r"^.*/(site-packages|lib/python3\.\d+)/")

Entry = tuple[str, int, str]


def profile_robot(
    deploy_args: list[str], *, cwd: Path, env: Mapping[str, str], timeout: float, top: int
) -> str:
    """Run `robot <deploy_args>` under the all-threads profiler; a summary as text."""
    with tempfile.TemporaryDirectory(prefix="bench-prof-") as tmp:
        out = Path(tmp) / "robot.prof"
        done = run_drained(
            [sys.executable, str(PROFILER), str(out), *deploy_args], cwd=cwd, env=env, timeout=timeout
        )
        if not out.exists():
            return f"(profile not written: exit {done.returncode}; {done.stderr[-500:]})"
        table = pstats.Stats(str(out)).stats  # type: ignore[attr-defined]
    rows: dict[Entry, tuple[int, float, float]] = {
        key: (int(value[1]), float(value[2]), float(value[3])) for key, value in table.items()
    }
    busy = {k: v for k, v in rows.items() if not (k[0] == "~" and any(w in k[2] for w in _WAITING))}
    lines = [f"profiled run: {done.wall:.2f} s wall (profiler included), exit {done.returncode}"]
    lines.append("  own time (tottime), waiting excluded:")
    lines += _format(sorted(busy.items(), key=lambda kv: kv[1][1], reverse=True)[:top])
    # The deploy's spine (mostly waiting on its steps) and module bodies (see -X importtime)
    # would crowd out the functions worth reading.
    spine = SPINE_SHARE * done.wall
    ours = {
        k: v
        for k, v in busy.items()
        if k[0].startswith(str(ROOT / "bot")) and k[2] != "<module>" and v[2] < spine
    }
    lines.append(
        f"  the robot's own functions by cumulative time (module bodies and the spine "
        f"≥ {SPINE_SHARE:.0%} of the run left out; includes waiting they do):"
    )
    lines += _format(sorted(ours.items(), key=lambda kv: kv[1][2], reverse=True)[:top])
    return "\n".join(lines)


def _format(items: list[tuple[Entry, tuple[int, float, float]]]) -> list[str]:
    out = [f"    {'calls':>9} {'own s':>7} {'cum s':>7}  function"]
    for (file, line, name), (calls, own, cumulative) in items:
        where = name if file == "~" else f"{_short(file)}:{line}({name})"
        out.append(f"    {calls:>9} {own:>7.3f} {cumulative:>7.3f}  {where}")
    return out


def _short(file: str) -> str:
    return _LIB.sub("", file.removeprefix(str(ROOT) + "/"))
