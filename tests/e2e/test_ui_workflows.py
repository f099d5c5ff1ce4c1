"""UI -> API conversion (workflows/convert.py) against the running server's /object_info, on both pins: every shipped
UI workflow converts to its committed API twin, the template browser lists them, and a graph with what users build by
hand (a primitive feeding converted widgets, reroutes, a bypassed and a muted node, notes, groups, seed controls)
converts as the frontend's export does and is accepted by /prompt."""

import copy
import json
from pathlib import Path

import pytest

from workflows.convert import ConversionError, to_api, widget_values

ROOT = Path(__file__).resolve().parents[2]
UI_FILES = sorted((ROOT / "example_workflows").glob("*.json"))

pytestmark = pytest.mark.minimum_pin


def without_default_titles(api: dict, ui: dict) -> dict:
    """Titles of untitled nodes are the pin's display names, which the two pins spell differently."""
    titled = {str(n["id"]) for n in ui["nodes"] if "title" in n}
    return {k: {**v, "_meta": v["_meta"] if k in titled else None} for k, v in api.items()}


def test_ui_workflows_are_shipped():
    assert len(UI_FILES) >= 15
    assert {p.stem for p in UI_FILES} == {p.stem for p in (ROOT / "workflows" / "api").glob("*.json")}


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.name)
def test_ui_workflow_converts_to_its_api_twin(server, path, pin):
    ui = json.loads(path.read_text())
    api = json.loads((ROOT / "workflows" / "api" / path.name).read_text())
    converted = to_api(ui, server.object_info())
    if pin == "current":
        assert converted == api
    else:
        assert without_default_titles(converted, ui) == without_default_titles(api, ui)


def test_template_browser_lists_every_ui_workflow_and_serves_it_with_its_thumbnail(server):
    listed = server.get_json("/workflow_templates")
    assert sorted(listed["quickstep"]) == sorted(p.stem for p in UI_FILES)
    name = UI_FILES[0].stem
    assert json.loads(server.get_bytes(f"/api/workflow_templates/quickstep/{name}.json")) == \
        json.loads(UI_FILES[0].read_text())
    assert server.get_bytes(f"/api/workflow_templates/quickstep/{name}.jpg")[:3] == b"\xff\xd8\xff"  # JPEG


def hand_built() -> dict:
    """Toy text-to-image as a user wires it: a PrimitiveNode drives the seed of the sampler (converted widget) and the
    prompt of two nodes, the MODEL goes through two Reroutes, a bypassed LatentUpscaleBy sits between the latent and
    the sampler, a muted CLIPTextEncode feeds a muted PreviewImage, plus a note and a group."""
    def node(id_, type_, inputs=(), outputs=(), widgets=(), mode=0, title=None):
        n = {"id": id_, "type": type_, "pos": [id_ * 50, 0], "size": [300, 100], "flags": {}, "order": id_,
             "mode": mode, "inputs": [dict(i) for i in inputs], "outputs": [dict(o) for o in outputs],
             "properties": {}, "widgets_values": list(widgets)}
        if title:
            n["title"] = title
        return n

    def sock(name, type_, link, widget=False):
        s = {"name": name, "type": type_, "link": link}
        if widget:
            s["widget"] = {"name": name}
        return s

    def out(name, type_, links):
        return {"name": name, "type": type_, "links": links}

    nodes = [
        node(1, "QuickstepToyCheckpoint", outputs=[out("MODEL", "MODEL", [1]), out("CLIP", "CLIP", [3, 4]),
                                                   out("VAE", "VAE", [5])], widgets=["teacher"]),
        node(2, "Reroute", inputs=[sock("", "*", 1)], outputs=[out("", "MODEL", [2])]),
        node(3, "Reroute", inputs=[sock("", "*", 2)], outputs=[out("", "MODEL", [6])]),
        node(4, "PrimitiveNode", outputs=[{**out("connect to widget input", "INT", [7]), "widget": {"name": "seed"}}],
             widgets=[1234, "fixed"], title="Seed"),
        node(5, "PrimitiveNode", outputs=[{**out("connect to widget input", "STRING", [8, 9]),
                                           "widget": {"name": "text"}}], widgets=["a photo of a red circle"]),
        node(6, "CLIPTextEncode", inputs=[sock("clip", "CLIP", 3), sock("text", "STRING", 8, widget=True)],
             outputs=[out("CONDITIONING", "CONDITIONING", [10, 11])], widgets=["stale text the primitive replaces"]),
        node(7, "EmptyLatentImage", outputs=[out("LATENT", "LATENT", [12])], widgets=[128, 128, 1]),
        node(8, "LatentUpscaleBy", inputs=[sock("samples", "LATENT", 12)], outputs=[out("LATENT", "LATENT", [13])],
             widgets=["nearest-exact", 1.5], mode=4),
        node(9, "QuickstepTurboKSampler",
             inputs=[sock("model", "MODEL", 6), sock("positive", "CONDITIONING", 10),
                     sock("negative", "CONDITIONING", 11), sock("latent_image", "LATENT", 13),
                     sock("seed", "INT", 7, widget=True)],
             outputs=[out("LATENT", "LATENT", [14])], widgets=[0, "randomize", 1, 4.0, "auto", 1.0, 1.0, 1.0]),
        node(10, "VAEDecode", inputs=[sock("samples", "LATENT", 14), sock("vae", "VAE", 5)],
             outputs=[out("IMAGE", "IMAGE", [15])]),
        node(11, "PreviewImage", inputs=[sock("images", "IMAGE", 15)], title="Look"),
        node(12, "CLIPTextEncode", inputs=[sock("clip", "CLIP", 4), sock("text", "STRING", 9, widget=True)],
             outputs=[out("CONDITIONING", "CONDITIONING", [])], widgets=[""], mode=2),
        node(13, "Note", widgets=["Change the seed in the Seed primitive."]),
    ]
    links = [[1, 1, 0, 2, 0, "MODEL"], [2, 2, 0, 3, 0, "MODEL"], [3, 1, 1, 6, 0, "CLIP"], [4, 1, 1, 12, 0, "CLIP"],
             [5, 1, 2, 10, 1, "VAE"], [6, 3, 0, 9, 0, "MODEL"], [7, 4, 0, 9, 4, "INT"], [8, 5, 0, 6, 1, "STRING"],
             [9, 5, 0, 12, 1, "STRING"], [10, 6, 0, 9, 1, "CONDITIONING"], [11, 6, 0, 9, 2, "CONDITIONING"],
             [12, 7, 0, 8, 0, "LATENT"], [13, 8, 0, 9, 3, "LATENT"], [14, 9, 0, 10, 0, "LATENT"],
             [15, 10, 0, 11, 0, "IMAGE"]]
    return {"last_node_id": 13, "last_link_id": 15, "nodes": nodes, "links": links,
            "groups": [{"id": 1, "title": "Sampling", "bounding": [0, 0, 800, 400], "color": "#3f789e",
                        "font_size": 24, "flags": {}}], "config": {}, "extra": {}, "version": 0.4}


def test_hand_built_graph_converts_like_the_frontend_and_runs(server):
    info = server.object_info()
    api = to_api(hand_built(), info)
    strip = {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()}
    assert strip == {
        "1": {"class_type": "QuickstepToyCheckpoint", "inputs": {"model": "teacher"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a photo of a red circle"}},
        "7": {"class_type": "EmptyLatentImage", "inputs": {"width": 128, "height": 128, "batch_size": 1}},
        "9": {"class_type": "QuickstepTurboKSampler",
              "inputs": {"model": ["1", 0], "positive": ["6", 0], "negative": ["6", 0], "latent_image": ["7", 0],
                         "seed": 1234, "steps": 1, "cfg": 4.0, "eta_mode": "auto", "eta": 1.0, "denoise": 1.0,
                         "s_noise": 1.0}},
        "10": {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0], "vae": ["1", 2]}},
        "11": {"class_type": "PreviewImage", "inputs": {"images": ["10", 0]}},
    }
    assert api["11"]["_meta"]["title"] == "Look"
    assert api["9"]["_meta"]["title"] == info["QuickstepTurboKSampler"]["display_name"]
    result = server.run(api)
    assert result.status == "success", result.error
    assert len(result.outputs["11"]["images"]) == 1


def test_muted_source_drops_the_input_and_a_bypass_without_a_matching_input_drops_it_too(server):
    info = server.object_info()
    graph = hand_built()
    nodes = {n["id"]: n for n in graph["nodes"]}
    nodes[6]["mode"] = 2     # the positive prompt muted: both conditioning inputs of the sampler go
    nodes[7]["mode"] = 4     # the empty latent bypassed: it has no input, so the latent input goes
    api = to_api(graph, info)
    assert "6" not in api and "7" not in api
    assert {"positive", "negative", "latent_image"}.isdisjoint(api["9"]["inputs"])
    assert api["9"]["inputs"]["seed"] == 1234


def test_widget_values_skip_seed_controls_and_fill_missing_with_defaults(server):
    info = server.object_info()["KSampler"]
    values = widget_values({"widgets_values": [7, "increment", 3]}, info)
    assert values["seed"] == 7 and values["steps"] == 3
    assert values["cfg"] == info["input"]["required"]["cfg"][1]["default"]
    by_name = widget_values({"widgets_values": {"seed": 5, "steps": 2}}, info)
    assert by_name["seed"] == 5 and by_name["steps"] == 2


def test_unknown_node_is_named_in_the_error(server):
    graph = copy.deepcopy(hand_built())
    graph["nodes"][0]["type"] = "SomePackLoader"
    with pytest.raises(ConversionError, match=r"no node type SomePackLoader \(node 1\)"):
        to_api(graph, server.object_info())
    with pytest.raises(ConversionError, match="not a UI-format workflow"):
        to_api({"1": {"class_type": "VAEDecode", "inputs": {}}}, server.object_info())
