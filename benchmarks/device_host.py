"""Getting the pinned ComfyUI host onto a device machine that has no network, for benchmarks/device_real_size.py.

The device runs the repository root with its own python3 (torch 2.11 + CUDA 13, transformers, safetensors, ...: see
/work/.library/device/KINDS.md) and reaches nothing outside, so it can neither clone ComfyUI nor pip-install what
ComfyUI imports. `stage(dest)` (run here, in the project venv) writes an ignored folder that the `run` call carries:

    dest/ComfyUI/   the pinned host's Python files and small data files (no models, tests, blueprints, API nodes or
                    large tokenizers: ~9 MB of the 81 MB checkout); ComfyUI's own code, never committed
    dest/site/      what ComfyUI imports unconditionally and the device image lacks, copied from the project venv:
                    comfy_aimdo, torchsde, trampoline, and comfy_kitchen without its 230 MB compiled CUDA/HIP kernels
                    (used only for fp8/fp4 quantised weights and an opt-in attention; bf16 runs never call them)
    dest/MANIFEST.txt

`activate(dest)` (on the device) puts dest/site first on sys.path and, for `av` (PyAV, a 36 MB wheel that
comfy_api imports at module level for its video types and that no path here calls), installs an import stub when
the real package is missing; it returns dest/ComfyUI. Together they stay well inside the 64 MiB a call carries.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ".device_carry"
CARRY_LIMIT = 64 * 2**20  # what one device call carries: the working tree plus carried paths

HOST_DIRS = ("comfy", "comfy_api", "comfy_extras", "comfy_execution", "comfy_config", "app", "utils", "middleware",
             "api_server")
KEEP_WHOLE = ("comfy/sd1_tokenizer",)  # the CLIP-L tokenizer the tiny SD1 models of the dry run use
SMALL_DATA = 64 * 1024  # non-Python files of the host kept if at most this big (configs, small vocabularies)
PACKAGES = {  # top-level module -> path fragments (relative to the package) left out
    "comfy_aimdo": ("aimdo_rocm",),
    "comfy_kitchen": ("backends/cuda/_C", "backends/hip/_C"),
    "torchsde": (),
    "trampoline": (),
}
STUBBED = ("av",)


def _skip(rel: str, fragments) -> bool:
    return "__pycache__" in rel or any(f in rel for f in fragments)


def _copy_tree(src: Path, dst: Path, keep) -> int:
    total = 0
    for path in sorted(src.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(src).as_posix()
        if keep(rel, path):
            out = dst / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, out)
            total += path.stat().st_size
    return total


def _host_keep(rel: str, path: Path) -> bool:
    if "__pycache__" in rel or rel.endswith(".pyc"):
        return False
    if rel.endswith(".py") or any(rel.startswith(k + "/") for k in KEEP_WHOLE):
        return True
    return path.stat().st_size <= SMALL_DATA


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"stage: the package {name!r} is not importable in {sys.executable}; run the staging "
                           "with the project venv (~/.cache/quickstep/venv/bin/python), which ComfyUI's "
                           "requirements were installed into.")
    return Path(list(spec.submodule_search_locations)[0])


def _tree_bytes() -> int | None:
    """Bytes of what a device call sends anyway: tracked and untracked-not-ignored files of the checkout."""
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    names = [n for n in out.decode().split("\0") if n]
    return sum((ROOT / n).stat().st_size for n in names if (ROOT / n).is_file())


def _ignore_in_git(dest: Path) -> str | None:
    """Add `dest` to .git/info/exclude when it sits in this checkout (so it travels only when carried and nobody
    commits it). Returns the pattern, or None when dest is elsewhere."""
    try:
        rel = dest.resolve().relative_to(ROOT)
    except ValueError:
        return None
    git_dir = ROOT / ".git"
    if not git_dir.is_dir():
        return None
    exclude = git_dir / "info" / "exclude"
    pattern = f"/{rel.as_posix()}/"
    lines = exclude.read_text().splitlines() if exclude.exists() else []
    if pattern not in lines:
        exclude.parent.mkdir(parents=True, exist_ok=True)
        with exclude.open("a") as f:
            f.write(pattern + "\n")
    return pattern


def stage(dest: Path, host: Path) -> str:
    """Write the carry folder `dest` from the ComfyUI checkout `host` and this interpreter's packages; returns a
    summary. `dest` is replaced."""
    dest = Path(dest)
    if dest.resolve() == ROOT or ROOT.is_relative_to(dest.resolve()):
        raise ValueError(f"stage: refusing to replace {dest}: it holds the repository.")
    if not (host / "main.py").is_file() or not (host / "comfy" / "samplers.py").is_file():
        raise ValueError(f"stage: {host} is not a ComfyUI checkout (no main.py and comfy/samplers.py).")
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "ComfyUI").mkdir(parents=True)
    sizes = {"ComfyUI": 0}
    for path in sorted(host.glob("*.py")):  # main.py, nodes.py, folder_paths.py, comfyui_version.py, ...
        shutil.copy2(path, dest / "ComfyUI" / path.name)
        sizes["ComfyUI"] += path.stat().st_size
    for d in HOST_DIRS:
        if (host / d).is_dir():
            sizes["ComfyUI"] += _copy_tree(host / d, dest / "ComfyUI" / d, _host_keep)
    for name, left_out in PACKAGES.items():
        sizes[name] = _copy_tree(_package_dir(name), dest / "site" / name,
                                 lambda rel, path, left_out=left_out: not _skip(rel, left_out) and not rel.endswith(".pyc"))
    pattern = _ignore_in_git(dest)
    carried = sum(sizes.values())
    tree = _tree_bytes()
    lines = [f"ComfyUI host: {host} ({_host_version(host)})",
             *[f"{k}: {v / 2**20:.1f} MiB" for k, v in sizes.items()],
             f"carried in all: {carried / 2**20:.1f} MiB"
             + (f"; with the working tree ({tree / 2**20:.1f} MiB): {(carried + tree) / 2**20:.1f} MiB of the "
                f"{CARRY_LIMIT / 2**20:.0f} MiB a call carries" if tree is not None else ""),
             f"stubbed on the device when missing: {', '.join(STUBBED)}",
             f"git: {'ignored as ' + pattern if pattern else 'outside this checkout'}"]
    (dest / "MANIFEST.txt").write_text("\n".join(lines) + "\n")
    if tree is not None and carried + tree > CARRY_LIMIT:
        raise RuntimeError("stage: the call would carry more than 64 MiB:\n" + "\n".join(lines))
    return "\n".join(lines)


def _host_version(host: Path) -> str:
    version = host / "comfyui_version.py"
    if version.is_file():
        for line in version.read_text().splitlines():
            if line.startswith("__version__"):
                return "ComfyUI " + line.split("=", 1)[1].strip().strip("\"'")
    return "ComfyUI, version unknown"


class _StubType(type):
    """Attribute chains on a stub class give more stub classes (`ColorRange.JPEG`, `av.video.frame.VideoFrame`)."""

    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _StubType(name, (), {"__module__": cls.__module__})


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _StubType(name, (), {"__module__": self.__name__})


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports of a missing package (and its submodules) give empty stand-ins whose every attribute is a class:
    enough for modules that only name its types at import. Any real use fails (a stub class has no behaviour)."""

    def __init__(self, names):
        self.names = tuple(names)

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.names:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StubModule(spec.name)
        module.__path__ = []
        module.__doc__ = "import stub (benchmarks/device_host.py): the real package is not installed here"
        return module

    def exec_module(self, module):
        pass


def stub_missing(names=STUBBED) -> list[str]:
    """Install import stubs for those of `names` that cannot be imported; returns the names stubbed."""
    missing = []
    for name in names:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        sys.meta_path.append(_StubFinder(missing))
    return missing


def activate(dest: Path) -> tuple[Path, list[str]]:
    """On the device: make the carried packages importable, stub what is still missing; returns (host, stubbed)."""
    dest = Path(dest).resolve()
    host = dest / "ComfyUI"
    if not (host / "comfy" / "samplers.py").is_file():
        raise RuntimeError(f"--host-dir {dest}: no staged ComfyUI in it. Stage it here first with "
                           f"`~/.cache/quickstep/venv/bin/python benchmarks/device_real_size.py --stage "
                           f"{DEFAULT_DIR}` and carry it ({DEFAULT_DIR!r} in run's carry).")
    site = dest / "site"
    if site.is_dir() and str(site) not in sys.path:
        sys.path.insert(0, str(site))
    return host, stub_missing()


def import_host(host: Path, cpu: bool) -> Path:
    """Import ComfyUI from `host` configured as `main.py` would be: `--cpu`, or on a GPU `--disable-dynamic-vram`
    (models load whole through the estimate-based memory manager, so what is measured does not depend on comfy-aimdo
    being able to map memory inside a VM). Idempotent; also marks the host as imported for host.inprocess."""
    sys.path.insert(0, str(ROOT))
    import host.inprocess as inprocess

    if inprocess._host is not None:
        return inprocess._host
    import tempfile

    sys.path.insert(0, str(host))
    import comfy.options

    comfy.options.enable_args_parsing()
    extra = ["--cpu"] if cpu else []
    if not cpu and "--disable-dynamic-vram" in (host / "comfy" / "cli_args.py").read_text():
        extra.append("--disable-dynamic-vram")
    argv, sys.argv = sys.argv, ["main.py", "--base-directory", tempfile.mkdtemp(prefix="quickstep-device-")] + extra
    try:
        import comfy.cli_args  # noqa: F401  parses the argv above
    finally:
        sys.argv = argv
    import comfy.model_management  # noqa: F401

    inprocess._host = Path(host)
    os.environ.setdefault("QUICKSTEP_HOST_CURRENT", str(host))
    return inprocess._host
