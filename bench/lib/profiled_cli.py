"""`robot` under cProfile on every thread: `python bench/lib/profiled_cli.py OUT.prof deploy …`.

`python -m cProfile` profiles only the main thread, and `robot deploy` runs the deploy on a
worker thread (and flushes output on Timer threads), so each new thread gets its own profiler
through threading.setprofile and all of them are merged into OUT.prof.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    """Profile bot.cli.main(argv[2:]) (imports included) and dump merged stats to argv[1]."""
    out, args = sys.argv[1], sys.argv[2:]
    sys.path.insert(0, str(ROOT))
    profiles: list[cProfile.Profile] = []

    def start_profiler(frame: FrameType, event: str, arg: Any) -> None:
        # First profile event of a new thread: hand the hook over to a C profiler for it.
        profiler = cProfile.Profile()
        profiles.append(profiler)
        profiler.enable()

    threading.setprofile(start_profiler)
    main_profiler = cProfile.Profile()
    code = 1
    main_profiler.enable()
    try:
        from bot.cli import main as cli_main

        code = cli_main(args)
    finally:
        main_profiler.disable()
        threading.setprofile(None)
        stats = pstats.Stats(main_profiler)
        for profiler in list(profiles):
            stats.add(profiler)
        stats.dump_stats(out)
    return code


if __name__ == "__main__":
    sys.exit(main())
