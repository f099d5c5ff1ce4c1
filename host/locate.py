"""Find a ComfyUI checkout to host the pack, in the order the README documents.

1. `$COMFYUI_PATH`;
2. the ComfyUI around the pack, when the pack sits in `<ComfyUI>/custom_nodes/<folder>`;
3. the cache `${XDG_CACHE_HOME:-~/.cache}/quickstep/comfyui/<commit>/`, cloned from upstream only when missing.
The minimum pin always comes from the cache (step 3): it exists to prove backward compatibility.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parent.parent
UPSTREAM = "https://github.com/Comfy-Org/ComfyUI"
PINS = {
    "current": "2f35f4a08176d993cded35dac3332be4f7287f41",  # ComfyUI v0.33.0, 2026-08-13
    "minimum": "a125cd84b054a57729b5eecab930ca9408719832",  # ComfyUI v0.3.64, 2025-10-12
}


class HostNotFound(RuntimeError):
    pass


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "quickstep"


def is_comfyui(path: Path) -> bool:
    return (path / "main.py").is_file() and (path / "comfy" / "samplers.py").is_file()


def _clone(commit: str, dest: Path) -> str | None:
    """Clone upstream at `commit` into `dest`; return an error text or None."""
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
    for cmd in (["git", "clone", "-q", "--no-checkout", UPSTREAM, str(tmp)],
                ["git", "-C", str(tmp), "checkout", "-q", "-f", commit]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            return f"`{' '.join(cmd)}` failed: {proc.stderr.strip()[-400:]}"
    os.replace(tmp, dest)
    return None


def find_host(pin: str = "current") -> Path:
    """Return the ComfyUI directory for `pin` ("current" or "minimum"), cloning into the cache if needed."""
    if pin not in PINS:
        raise ValueError(f"pin must be one of {sorted(PINS)}, got {pin!r}")
    searched: list[str] = []
    if pin == "current":
        env = os.environ.get("COMFYUI_PATH")
        if env:
            if is_comfyui(Path(env)):
                return Path(env).resolve()
            raise HostNotFound(f"COMFYUI_PATH={env} is not a ComfyUI checkout (no main.py and comfy/samplers.py "
                               "there). Point it at the folder that holds ComfyUI's main.py, or unset it.")
        searched.append("$COMFYUI_PATH (unset)")
        around = PACK_ROOT.parent.parent
        if PACK_ROOT.parent.name == "custom_nodes" and is_comfyui(around):
            return around
        searched.append(f"the ComfyUI around the pack ({around}: the pack is not in a custom_nodes folder)")
    commit = PINS[pin]
    cached = cache_root() / "comfyui" / commit
    if is_comfyui(cached):
        return cached
    searched.append(f"the cache {cached} (empty)")
    error = _clone(commit, cached)
    if error is None and is_comfyui(cached):
        return cached
    searched.append(f"cloning {UPSTREAM} at {commit}: {error}")
    raise HostNotFound(
        f"No ComfyUI host for the {pin} pin ({commit}). Looked in:\n  - " + "\n  - ".join(searched) +
        "\nProvide one: set COMFYUI_PATH to a ComfyUI checkout, or, offline, seed the cache from a local git copy"
        " of upstream ComfyUI with `../shared/tools/seed-comfyui-host <git dir>`.")
