"""What a robot process does to itself before it runs anyone's steps: keep its secrets to itself.

Steps run as the robot's user, so they could read the robot's memory and environment through
`/proc/<robot pid>/environ` and `/proc/<robot pid>/mem`. A process that is not "dumpable" has
those files owned by root, out of a same-user child's reach (Linux; elsewhere nothing changes).
The robot's own tokens also leave `os.environ` once the config has read them, so nothing the
robot starts without an explicit environment (a library's subprocess) inherits them. Where a
step must not touch the robot's files at all (its database, robot.yaml), run the robot and its
steps as different users: a step `[sudo, -u, deployer, …]` or Ansible's `become`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from collections.abc import Collection, MutableMapping

log = logging.getLogger(__name__)

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


def harden(tokens: Collection[str], environ: MutableMapping[str, str] = os.environ) -> None:
    """Make this process non-dumpable and drop the robot's tokens from its environment."""
    set_dumpable(False)
    for name in [n for n, value in environ.items() if value and value in tokens]:
        del environ[name]


def set_dumpable(dumpable: bool) -> None:
    """prctl(PR_SET_DUMPABLE): whether same-user processes may read this one's /proc files."""
    libc = _libc()
    if libc is not None and libc.prctl(PR_SET_DUMPABLE, int(dumpable), 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_DUMPABLE) failed: errno %d", ctypes.get_errno())


def is_dumpable() -> bool | None:
    """prctl(PR_GET_DUMPABLE), or None where there is no prctl (not Linux)."""
    libc = _libc()
    return None if libc is None else bool(libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0))


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
