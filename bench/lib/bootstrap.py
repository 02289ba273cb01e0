"""Shared start of every benchmark script: the repo importable, the repo's venv in charge."""

from __future__ import annotations

import importlib
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def use_repo_venv(*modules: str) -> None:
    """Put the repo on sys.path; re-run under .venv/bin/python if ``modules`` are missing here."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:
        for module in modules:
            importlib.import_module(module)
    except ImportError:
        venv = ROOT / ".venv" / "bin" / "python"
        if venv.exists() and Path(sys.executable) != venv:
            os.execv(venv, [str(venv), *sys.argv])
        raise


@contextmanager
def reporting(clean_up: Callable[[], object]) -> Iterator[None]:
    """One bench run: an error stops it with its traceback, not the report that follows (a
    benchmark reports; it does not fail the build); ``clean_up`` runs either way."""
    try:
        yield
    except Exception:
        traceback.print_exc()
        print("bench: stopped by the error above; numbers are incomplete.")
    finally:
        clean_up()


def took(began: float) -> str:
    """The closing line of a bench: how long it ran (``began`` is a monotonic time) and where."""
    return f"\n(bench took {time.monotonic() - began:.0f} s; {os.cpu_count()} CPUs; {sys.version.split()[0]})"
