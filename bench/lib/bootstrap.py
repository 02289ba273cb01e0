"""Shared start of every benchmark script: the repo importable, the repo's venv in charge."""

from __future__ import annotations

import importlib
import os
import sys
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
