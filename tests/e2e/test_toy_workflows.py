"""Every shipped `workflows/api/toy_*.json` runs through a real server on the shipped toy weights: images come back and
the toy evaluator reports a score."""

import json
from pathlib import Path

import pytest

TOY_WORKFLOWS = sorted((Path(__file__).resolve().parents[2] / "workflows" / "api").glob("toy_*.json"))


def test_toy_workflows_are_shipped():
    names = {p.name for p in TOY_WORKFLOWS}
    assert {"toy_turbo_1step.json", "toy_turbo_4step.json"} <= names


@pytest.mark.parametrize("path", TOY_WORKFLOWS, ids=lambda p: p.name)
def test_toy_workflow_runs_and_returns_images(server, path):
    graph = json.loads(path.read_text())
    result = server.run(graph)
    assert result.status == "success", result.error
    saves = [i for i, n in graph.items() if n["class_type"] == "SaveImage"]
    assert saves
    for node_id in saves:
        images = result.outputs[node_id]["images"]
        assert len(images) == 4  # EmptyLatentImage batch_size

        png = server.view(images[0])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")  # IHDR
        assert (width, height) == (64, 64)  # the latent size matches the toy VAE's 4x
    evals = [i for i, n in graph.items() if n["class_type"] == "QuickstepToyEvaluate"]
    for node_id in evals:
        text = result.outputs[node_id]["text"][0]
        category, score = text.rsplit(": ", 1)
        assert category in ("single_object", "two_object", "counting", "colors", "position", "color_attr")
        assert 0.0 <= float(score) <= 1.0


def test_toy_nodes_are_registered_under_quickstep_toy(server):
    info = server.object_info()
    for node_id in ("QuickstepToyCheckpoint", "QuickstepToyReward", "QuickstepToyEvaluate"):
        assert info[node_id]["category"] == "quickstep/toy"
    assert info["QuickstepToyReward"]["output"] == ["REWARD_MODEL"]
