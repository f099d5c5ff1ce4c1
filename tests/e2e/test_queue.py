"""The headless queue command (`python -m workflows.queue`) against the session's server: every toy UI workflow
completes through it with its outputs saved; an API file works too; a prompt ComfyUI rejects and a node that fails
while running both exit non-zero with ComfyUI's message."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOY_UI = sorted((ROOT / "example_workflows").glob("toy_*.json"))


def queue(server, workflow: Path, out: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workflows.queue", str(workflow), "--server", server.url,
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def saved_batch(ui: dict) -> int:
    saves = [n for n in ui["nodes"] if n["type"] == "SaveImage" and n.get("mode", 0) == 0]
    return len(saves)


@pytest.mark.parametrize("path", TOY_UI, ids=lambda p: p.name)
def test_toy_ui_workflow_completes_through_the_queue_command(server, path, tmp_path):
    proc = queue(server, path, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ui = json.loads(path.read_text())
    pngs = sorted((tmp_path / "out").glob("*.png"))
    assert len(pngs) >= 4 * saved_batch(ui)   # every SaveImage of a toy workflow saves a batch of 4
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert "done in" in proc.stdout
    if "toy_ladd" not in path.name:
        assert "QuickstepToyEvaluate" in proc.stderr or "cached" in proc.stderr  # progress names nodes


def test_api_format_file_and_progress_bars(server, tmp_path):
    graph = json.loads((ROOT / "workflows" / "api" / "toy_turbo_4step.json").read_text())
    graph["7"]["inputs"]["noise_seed"] = 4242  # not cached: every node runs and reports
    path = tmp_path / "api.json"
    path.write_text(json.dumps(graph))
    proc = queue(server, path, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "node 7 SamplerCustom" in proc.stderr and "4/4" in proc.stderr
    assert len(list((tmp_path / "out").glob("*.png"))) == 4
    assert "node 12: " in proc.stdout  # the evaluator's text output


def test_rejected_prompt_exits_2_with_comfyuis_node_error(server, tmp_path):
    ui = json.loads((ROOT / "example_workflows" / "toy_turbo_1step.json").read_text())
    sampler = next(n for n in ui["nodes"] if n["type"] == "QuickstepTurboKSampler")
    sampler["widgets_values"][2] = 0  # steps (after seed and its control)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(ui))
    proc = queue(server, path, tmp_path / "out")
    assert proc.returncode == 2
    assert "ComfyUI rejected the prompt" in proc.stderr and "node 5 (QuickstepTurboKSampler)" in proc.stderr
    assert "steps" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_failing_node_exits_1_with_its_exception(server, tmp_path):
    graph = {"1": {"class_type": "QuickstepToyCheckpoint", "inputs": {"model": "teacher"}},
             "2": {"class_type": "QuickstepLADDResume",
                   "inputs": {"model": ["1", 0], "state": "no_such_run/student_00001_state.safetensors"}},
             "3": {"class_type": "QuickstepLADDSave", "inputs": {"state": ["2", 0], "filename_prefix": "x/y"}}}
    path = tmp_path / "fails.json"
    path.write_text(json.dumps(graph))
    proc = queue(server, path, tmp_path / "out")
    assert proc.returncode in (1, 2), proc.stderr
    assert "no_such_run" in proc.stderr
    if proc.returncode == 1:
        assert "node 2 (QuickstepLADDResume) failed" in proc.stderr


def test_unreadable_or_unknown_format_exits_3(server, tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"hello": "world"}))
    proc = queue(server, path, tmp_path / "out")
    assert proc.returncode == 3 and "neither UI format" in proc.stderr
