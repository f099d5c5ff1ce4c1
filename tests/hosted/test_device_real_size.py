"""benchmarks/device_real_size.py, the prepared device benchmark: its tiny CPU dry run goes through every section and
writes a report with numbers in every row; a unit that runs out of memory is a row and the run goes on; a spent
budget skips units instead of starting them; the carry folder it stages for a device call imports ComfyUI and the
pack without the packages the device lacks, within the 64 MiB a call carries."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import harness

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "device_real_size.py"
NUMBER = r"\d+(?:\.\d+)?"


def run_script(*args, timeout=240) -> subprocess.CompletedProcess:
    env = dict(os.environ, QUICKSTEP_HOST_CURRENT=str(harness.host_path("current")), PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def rows(text: str, first_cell: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith(f"| {first_cell}")]


def test_dry_run_reports_every_section(tmp_path):
    out = tmp_path / "dry.md"
    proc = run_script("--size", "tiny", "--device", "cpu", "--ladd-configs", "sdxl:1024", "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = out.read_text()
    for bad in ("error", "OOM", "skipped", "stopped"):
        assert bad not in text, text
    assert "CPU (1 torch thread(s)" in text and "ComfyUI 0.33.0" in text

    ladd = rows(text, "SDXL | 1024")
    assert [r[2] for r in ladd] == ["core TrainLoraNode", "Quickstep LADD", "**LADD / core**"], text
    for r in ladd[:2]:
        assert re.match(NUMBER + r" \(n=\d\)", r[3]) and float(r[5]) > 0 and float(r[8]) > 0, r  # s, FLOPs, x floor
    # core's TrainLoraNode runs every image's cond over the batch (2 x 2 rows); LADD: student 2 + D 4 + G 2
    assert (ladd[0][4], ladd[1][4]) == ("4", "8"), ladd
    assert re.match(r"\*\*" + NUMBER + r"x\*\*", ladd[2][3]), ladd[2]

    for model in ("SD-Turbo (SD2.1 UNet)", "SDXL-Turbo (SDXL UNet)"):
        reno = rows(text, model)
        assert [r[1] for r in reno] == ["off", "all (generator, VAE, rewards)"], text
        assert all(float(r[2]) > 0 and r[3].endswith("(4)") for r in reno), reno
    parts = {(r[0], r[1]) for r in rows(text, "SD") if r[1].startswith(("generator", "VAE", "reward"))}
    assert {p for _, p in parts} == {"generator", "VAE decoder", "reward clip", "reward pickscore", "reward hps",
                                     "reward imagereward"}, parts
    ratios = [r for r in rows(text, "SD") if r[0] in ("SD-Turbo", "SDXL-Turbo") and r[3].startswith("**")]
    assert len(ratios) == 2 and all(0.5 < float(r[3].strip("*")) < 5 for r in ratios), ratios

    turbo = [r for r in rows(text, "") if r[0] in ("1", "4")]
    assert [r[0] for r in turbo] == ["1", "4"] and all(float(r[4]) > 0 for r in turbo), turbo
    assert re.search(r"Sections: ladd \d+ s, reno \d+ s, turbo \d+ s", text)


def test_spent_budget_skips_units_and_still_writes(tmp_path, pin):
    if pin != "current":
        pytest.skip("the device benchmark targets the current pin")
    bench = _bench()
    out = tmp_path / "late.md"
    assert bench.main(["--size", "tiny", "--device", "cpu", "--budget-s", "0", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.count("skipped:") >= 3 and "core TrainLoraNode |" not in text, text
    assert "Sections: ladd" in text


def _bench():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import device_real_size

    return device_real_size


def test_out_of_memory_is_a_row_and_the_run_goes_on(tmp_path, monkeypatch, pin):
    if pin != "current":
        pytest.skip("the device benchmark targets the current pin")
    import torch

    bench = _bench()

    built = bench.build_unet

    def build(ctx, arch, seed=0):
        if arch == "sdxl":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return built(ctx, arch, seed)

    monkeypatch.setattr(bench, "build_unet", build)
    out = tmp_path / "oom.md"
    assert bench.main(["--size", "tiny", "--device", "cpu", "--only", "ladd", "--ladd-configs",
                       "sdxl:1024,sd15:512", "--steps", "1", "--out", str(out)]) == 0
    text = out.read_text()
    assert rows(text, "SDXL | 1024")[0][3].startswith("OOM"), text
    sd15 = rows(text, "SD1.5 | 512")
    assert [r[2] for r in sd15] == ["core TrainLoraNode", "Quickstep LADD", "**LADD / core**"], text


def test_staged_carry_imports_without_the_missing_packages(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import device_host

    carry = tmp_path / "carry"
    summary = device_host.stage(carry, harness.host_path("current"))
    assert "ComfyUI 0.33.0" in summary
    files = [p for p in carry.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 16 * 2**20, summary
    assert not [p for p in files if "_C." in p.name], "comfy_kitchen's compiled kernels must be left out"
    assert (carry / "ComfyUI" / "comfy" / "model_management.py").is_file()
    # the device has no av (and none of the venv's site-packages for ComfyUI): block it and import what runs
    probe = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'av': raise ImportError('no av here')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"sys.path.insert(0, {str(ROOT / 'benchmarks')!r})\n"
        "import device_host\n"
        f"host, stubbed = device_host.activate({str(carry)!r})\n"
        "sys.meta_path.pop(0)\n"
        "device_host.import_host(host, cpu=True)\n"
        "import comfy.sd, comfy_extras.nodes_train, comfy_api.latest, comfy_kitchen, torchsde\n"
        "from host.inprocess import register_pack; register_pack()\n"
        "import quickstep.nodes.turbo, quickstep.samplers.reno, quickstep.distill.step\n"
        "print(stubbed, comfy.sd.__file__, comfy_kitchen.__file__)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("QUICKSTEP_HOST_CURRENT", "COMFYUI_PATH")}
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stubbed, sd_file, ck_file = proc.stdout.split()[-3:]
    assert stubbed == "['av']" and sd_file.startswith(str(carry)) and ck_file.startswith(str(carry)), proc.stdout
