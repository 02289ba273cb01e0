"""How hard the property tests try: `make test` (CI) runs every example, `make test-fast` a share.

The unit tier is the quick loop while editing; the whole suite is what must pass before a change
lands, and it always runs the full count.
"""

from __future__ import annotations

import os

SCALE = float(os.environ.get("ROBOT_FUZZ_SCALE", "1"))


def examples(full: int) -> int:
    """``full`` examples, scaled by ROBOT_FUZZ_SCALE (at least 10)."""
    return max(10, round(full * SCALE))
