"""The project's virtualenv: the host's requirements plus a torch triplet that imports together without a GPU.

ComfyUI v0.33 imports torchaudio unconditionally, so torch, torchvision and torchaudio must be builds of one release;
the PyPI triplet below imports together and runs with `--cpu` on machines without a GPU. This pin is for the test and
demo environment only: the pack itself never pins torch (see requirements.txt).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import venv
from pathlib import Path

from .locate import PACK_ROOT, cache_root

TORCH_TRIPLET = ["torch==2.11.0", "torchvision==0.26.0", "torchaudio==2.11.0"]
DEV_TOOLS = ["pytest>=8", "websocket-client>=1.6", "ruff>=0.6", "open_clip_torch>=3.0", "playwright>=1.40"]
_SUPPLIED = {"torch", "torchvision", "torchaudio"}


def _requirement_lines(path: Path) -> list[str]:
    lines = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        name = re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0].lower()
        if line and name not in _SUPPLIED:
            lines.append(line)
    return lines


def requirements(host: Path) -> list[str]:
    reqs = TORCH_TRIPLET + _requirement_lines(host / "requirements.txt")
    reqs += _requirement_lines(PACK_ROOT / "requirements.txt") + DEV_TOOLS
    return reqs


def venv_python(venv_dir: Path) -> Path:
    return venv_dir / "bin" / "python"


def ensure_venv(host: Path, log=print) -> Path:
    """Create or update the cached virtualenv for `host`; return its python."""
    venv_dir = Path(os.environ.get("QUICKSTEP_VENV") or cache_root() / "venv")
    reqs = requirements(host)
    key = hashlib.sha256("\n".join(reqs).encode()).hexdigest()
    marker = venv_dir / "quickstep-requirements.sha256"
    python = venv_python(venv_dir)
    if python.exists() and marker.exists() and marker.read_text().strip() == key:
        return python
    if not python.exists():
        log(f"[quickstep] creating the test virtualenv in {venv_dir}")
        venv.EnvBuilder(with_pip=True, clear=True).create(venv_dir)
    log(f"[quickstep] installing {len(reqs)} requirements into {venv_dir} (first run downloads torch; minutes)")
    cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *reqs]
    if subprocess.run(cmd).returncode != 0:
        sys.exit(f"[quickstep] pip install failed for the test virtualenv in {venv_dir}; see the output above.")
    marker.write_text(key + "\n")
    return python


def _pinned(host: Path) -> set[str]:
    return {line.replace(" ", "") for line in _requirement_lines(host / "requirements.txt") if "==" in line}


def host_overlay(host: Path, venv_host: Path, log=print) -> Path | None:
    """A PYTHONPATH folder with `host`'s exact pins (frontend, templates, docs) where they differ from the packages
    the virtualenv was built for (`venv_host`'s). The minimum pin (v0.3.64) needs the older
    comfyui-workflow-templates layout to start; everything else it shares with the current pin."""
    differing = sorted(_pinned(host) - _pinned(venv_host))
    if not differing:
        return None
    key = hashlib.sha256("\n".join(differing).encode()).hexdigest()[:16]
    overlay = cache_root() / f"overlay-{key}"
    if (overlay / ".ready").exists():
        return overlay
    log(f"[quickstep] installing {', '.join(differing)} into {overlay} for the host at {host}")
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q", "--no-deps",
           "--target", str(overlay), "--upgrade", *differing]
    if subprocess.run(cmd).returncode != 0:
        raise RuntimeError(f"pip could not install {differing} into {overlay}")
    (overlay / ".ready").write_text(key + "\n")
    return overlay
