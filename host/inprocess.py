"""Bring ComfyUI's modules from a host checkout into this process, configured as `main.py --cpu` would."""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path

from .locate import PACK_ROOT

_host: Path | None = None


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


def import_host(host: Path, cpu: bool = True) -> Path:
    """Put `host` on sys.path and parse ComfyUI's arguments (`--cpu`, a temporary base directory). Idempotent."""
    global _host
    if _host is not None:
        return _host
    sys.path.insert(0, str(host))
    import comfy.options

    comfy.options.enable_args_parsing()
    base = tempfile.mkdtemp(prefix="quickstep-inprocess-")
    argv, sys.argv = sys.argv, ["main.py", "--base-directory", base] + (["--cpu"] if cpu else [])
    try:
        import comfy.cli_args  # noqa: F401  parses the argv above
    finally:
        sys.argv = argv
    import comfy.model_management  # noqa: F401
    _host = Path(host)
    return _host
