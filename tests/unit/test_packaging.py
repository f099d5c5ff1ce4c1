"""Packaging: installable as `quickstep`, requirements never pin what ComfyUI provides, lint is clean."""

import re
import subprocess
import sys
import venv
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]
PROVIDED = {"torch", "torchvision", "torchaudio", "numpy", "transformers", "safetensors", "kornia"}


def requirement_names_and_specs():
    for raw in (ROOT / "requirements.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name = re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0].lower()
            yield name, line[len(name):]


def test_requirements_never_pin_or_cap_what_comfyui_provides():
    for name, spec in requirement_names_and_specs():
        if name in PROVIDED:
            assert "==" not in spec and "<" not in spec and "~=" not in spec, f"{name}{spec} pins or caps {name}"


def test_pyproject_registry_metadata():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project, comfy = meta["project"], meta["tool"]["comfy"]
    assert project["name"] == "quickstep" and re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    assert project["dynamic"] == ["dependencies"]  # single-sourced from requirements.txt
    assert meta["tool"]["setuptools"]["dynamic"]["dependencies"]["file"] == ["requirements.txt"]
    assert (ROOT / project["license"]["file"]).is_file()
    assert {"Repository", "Documentation", "Bug Tracker"} <= set(project["urls"])
    assert comfy["PublisherId"] and comfy["DisplayName"] and comfy["Icon"]
    assert comfy["requires-comfyui"] == ">=0.3.64"  # the minimum pin the suite runs on
    import quickstep

    assert quickstep.__version__ == project["version"]
    ignored = (ROOT / ".comfyignore").read_text().split()
    assert {"tests/", "benchmarks/"} <= set(ignored)


def test_ruff_clean():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_editable_install_imports_as_quickstep(tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                              "-e", str(ROOT)], capture_output=True, text=True, cwd=tmp_path)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    probe = subprocess.run([str(python), "-c", "import quickstep, quickstep.samplers.grid as g; "
                            "print(quickstep.__version__, g.discrete_timesteps(4))"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split(None, 1)[1].strip() == "[999, 749, 499, 249]"
