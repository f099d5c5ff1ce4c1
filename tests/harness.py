"""Shared test plumbing: which host a run uses, and how to bring it in-process."""

from __future__ import annotations

import os
import sys
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PACK_ROOT))  # for `host` (the harness package)

from host.inprocess import import_host, register_pack  # noqa: E402
from host.locate import find_host  # noqa: E402

__all__ = ["register_pack", "host_path", "setup_inprocess_host"]


def host_path(pin: str) -> Path:
    """The host for `pin`: what `python3 -m host test` resolved, else the same search it does."""
    env = os.environ.get(f"QUICKSTEP_HOST_{pin.upper()}")
    return Path(env) if env else find_host(pin)


def setup_inprocess_host(pin: str) -> Path:
    return import_host(host_path(pin))
