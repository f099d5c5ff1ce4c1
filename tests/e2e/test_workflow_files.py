"""Every shipped workflow is valid against the running server's /object_info: known nodes, known inputs, required
inputs present, links to existing outputs of the right type, widget values in range. Workflows for real models
(their checkpoints cannot be downloaded here) are checked this way; toy workflows also run (test_toy_workflows).
The committed files are what `python -m workflows.build` writes from workflows/describe.py (one source of truth)."""

import json
from pathlib import Path

import pytest

from workflows import build
from workflows.describe import FLOWS

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / "workflows" / "api").glob("*.json"))
MODEL_FILE = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".gguf", ".bin")


def combo_options(spec):
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == "COMBO":
        return spec[1].get("options", [])
    return None


def problems_in(graph: dict, info: dict) -> list[str]:
    problems = []
    for node_id, node in graph.items():
        cls = node["class_type"]
        if cls not in info:
            problems.append(f"node {node_id}: unknown class_type {cls}")
            continue
        spec = info[cls]["input"]
        required, optional = spec.get("required", {}), spec.get("optional", {})
        for name in required:
            if name not in node["inputs"]:
                problems.append(f"node {node_id} ({cls}): required input {name} missing")
        for name, value in node["inputs"].items():
            input_spec = required.get(name) or optional.get(name)
            if input_spec is None:
                problems.append(f"node {node_id} ({cls}): unknown input {name}")
                continue
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                src = graph.get(value[0])
                if src is None:
                    problems.append(f"node {node_id}.{name}: links to missing node {value[0]}")
                    continue
                outputs = info.get(src["class_type"], {}).get("output", [])
                if value[1] >= len(outputs):
                    problems.append(f"node {node_id}.{name}: output {value[1]} of {src['class_type']} does not exist")
                elif isinstance(input_spec[0], str) and input_spec[0] not in ("*", "COMBO") \
                        and outputs[value[1]] not in input_spec[0].split(","):  # "A,B": a MultiType input
                    problems.append(f"node {node_id}.{name}: expects {input_spec[0]}, linked to {outputs[value[1]]}")
                continue
            options = combo_options(input_spec)
            if options is not None:
                if value not in options and not str(value).endswith(MODEL_FILE):
                    problems.append(f"node {node_id}.{name}: {value!r} not in {options[:8]}")
            elif input_spec[0] in ("INT", "FLOAT"):
                opts = input_spec[1] if len(input_spec) > 1 else {}
                if not isinstance(value, (int, float)) or not opts.get("min", -1e30) <= value <= opts.get("max", 1e30):
                    problems.append(f"node {node_id}.{name}: {value!r} outside [{opts.get('min')}, {opts.get('max')}]")
    if not any(info.get(n["class_type"], {}).get("output_node") for n in graph.values()):
        problems.append("no output node: nothing would run")
    return problems


def test_there_are_shipped_workflows():
    assert WORKFLOWS


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_valid_against_object_info(server, path):
    graph = json.loads(path.read_text())
    assert isinstance(graph, dict) and all("class_type" in n for n in graph.values()), "not API format"
    problems = problems_in(graph, server.object_info())
    assert not problems, "\n".join(problems)


def test_validator_catches_a_broken_workflow(server):
    info = server.object_info()
    broken = {"1": {"class_type": "QuickstepTurboSampler", "inputs": {"eta_mode": "sometimes", "eta": 7.0}},
              "2": {"class_type": "VAEDecode", "inputs": {"samples": ["1", 0], "vae": ["9", 0]}}}
    found = "\n".join(problems_in(broken, info))
    for expected in ("required input s_noise missing", "'sometimes' not in", "7.0 outside", "expects LATENT",
                     "missing node 9", "no output node"):
        assert expected in found


def test_committed_workflows_are_what_the_description_builds(server, pin):
    if pin != "current":
        pytest.skip("the files are built from the current pin's /object_info; test_ui_workflows converts on both")
    expected = build.expected_files(server.object_info())
    stale = [str(p.relative_to(ROOT)) for p, text in expected.items() if not p.exists() or p.read_text() != text]
    assert not stale, f"{stale} differ from workflows/describe.py: run `python -m workflows.build` and commit"
    shipped = {p for d in (build.UI_DIR, build.API_DIR) for p in d.glob("*.json")}
    assert shipped == set(expected), f"not in describe.py: {sorted(map(str, shipped - set(expected)))}"


def test_every_real_workflow_has_a_toy_twin_and_every_workflow_a_thumbnail():
    names = {f.name for f in FLOWS}
    for flow in FLOWS:
        assert flow.name.startswith("toy_") or flow.twin in names, f"{flow.name}: no toy twin"
        assert (build.UI_DIR / f"{flow.name}.jpg").is_file(), f"{flow.name}: no thumbnail (python -m workflows.thumbnails)"
    for feature in ("sd_turbo_1step", "sdxl_turbo_1step", "sd35_large_turbo_4step", "flux_schnell_4step",
                    "best_of_n_sd_turbo", "reno_sd_turbo", "reno_rerender_sd_turbo", "ladd_sdxl"):
        assert feature in names
