"""Shared test plumbing: which host a run uses, and how to bring it in-process."""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PACK_ROOT))  # for `host` (the harness package)

from host.locate import find_host  # noqa: E402


def register_pack() -> None:
    """Make the repository importable as `quickstep` (as ComfyUI imports it: a package with relative imports)."""
    if "quickstep" in sys.modules:
        return
    try:
        if importlib.util.find_spec("quickstep") is not None:  # pip install -e .
            return
    except ValueError:
        pass
    spec = importlib.util.spec_from_file_location("quickstep", PACK_ROOT / "__init__.py",
                                                  submodule_search_locations=[str(PACK_ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["quickstep"] = module
    spec.loader.exec_module(module)


def host_path(pin: str) -> Path:
    """The host for `pin`: what `python3 -m host test` resolved, else the same search it does."""
    env = os.environ.get(f"QUICKSTEP_HOST_{pin.upper()}")
    return Path(env) if env else find_host(pin)


_inprocess: Path | None = None


def setup_inprocess_host(pin: str) -> Path:
    """Import ComfyUI's modules from the pinned host into this process, as `main.py --cpu` would configure them."""
    global _inprocess
    if _inprocess is not None:
        return _inprocess
    host = host_path(pin)
    sys.path.insert(0, str(host))
    import comfy.options

    comfy.options.enable_args_parsing()
    base = tempfile.mkdtemp(prefix="quickstep-inprocess-")
    argv, sys.argv = sys.argv, ["main.py", "--cpu", "--base-directory", base]
    try:
        import comfy.cli_args  # noqa: F401  parses the argv above
    finally:
        sys.argv = argv
    import comfy.model_management  # noqa: F401
    _inprocess = host
    return host
