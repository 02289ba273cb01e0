"""A build-like step for the bench: `printer.py N BURSTS PAUSE` writes N numbered lines in bursts."""

from __future__ import annotations

import sys
import time


def main(argv: list[str]) -> int:
    """Write the lines, sleeping PAUSE seconds after each burst (0: flat out)."""
    total, bursts, pause = int(argv[0]), int(argv[1]), float(argv[2])
    out = sys.stdout.buffer
    per = max(1, -(-total // bursts))
    for first in range(0, total, per):
        out.write(
            b"".join(
                b"out %06d compiling src/module_%03d.c -> build/module_%03d.o [ok]\n" % (i, i % 977, i % 977)
                for i in range(first, min(total, first + per))
            )
        )
        out.flush()
        if pause:
            time.sleep(pause)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
