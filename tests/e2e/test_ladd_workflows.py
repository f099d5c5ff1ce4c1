"""LADD nodes chained in API-format workflows through a real server: dataset -> init -> train -> train -> save, the
student previewed with the Turbo KSampler in the same graph, the loss plot, the saved LoRA through core's
LoraLoaderModelOnly in a second prompt, progress with previews, and Cancel within one training step."""

import pytest

from graphs import Graph
from host.server import PromptRejected

PROMPTS = "a red circle\na blue square"


def ladd_graph(folder: str, steps: int = 3, save_every: int = 2, channels: int = 32):
    g = Graph()
    ckpt = g.node("QuickstepTestTinyCheckpoint", family="sd1", seed=0, channels=channels)
    data = g.node("QuickstepLADDDataset", model=ckpt.out(0), clip=ckpt.out(1), prompts=PROMPTS, seed=0,
                  images_per_prompt=2, width=64, height=64, steps=2, cfg=2.0, sampler_name="euler", scheduler="normal",
                  folder=folder)
    init = g.node("QuickstepLADDInit", model=ckpt.out(0), rank=4, seed=0)
    train = g.node("QuickstepLADDTrain", state=init.out(0), dataset=data.out(0), steps=steps, batch_size=2,
                   save_every=save_every, save_prefix=f"{folder}/student")
    return g, ckpt, data, train


def test_ladd_nodes_chain_with_progress_previews_and_a_core_loadable_lora(server):
    g, ckpt, data, train = ladd_graph("e2e_ladd")
    train2 = g.node("QuickstepLADDTrain", state=train.out(0), dataset=data.out(0), steps=2, batch_size=2,
                    save_every=0)
    save = g.node("QuickstepLADDSave", state=train2.out(0), filename_prefix="e2e_ladd/student")
    pos = g.node("CLIPTextEncode", clip=ckpt.out(1), text="a red circle")
    latent = g.node("EmptyLatentImage", width=64, height=64, batch_size=1)
    sampled = g.node("QuickstepTurboKSampler", model=train.out(1), positive=pos.out(0), negative=pos.out(0),
                     latent_image=latent.out(0), seed=0, steps=2, cfg=1.0, eta_mode="auto", eta=1.0, denoise=1.0)
    image = g.node("SaveImage", images=g.node("VAEDecode", samples=sampled.out(0), vae=ckpt.out(2)).out(0),
                   filename_prefix="e2e_ladd_student")
    plot = g.node("SaveImage", images=g.node("QuickstepLADDLossPlot", losses=train2.out(2)).out(0),
                  filename_prefix="e2e_ladd_plot")
    result = server.run(g.to_api())
    assert result.status == "success", result.error

    for node, steps in ((train, 3), (train2, 2)):
        values = [p["value"] for p in result.of_type("progress") if p["node"] == node.id]
        assert values[-1] == steps and max(p["max"] for p in result.of_type("progress") if p["node"] == node.id) == steps
    data_progress = [p["value"] for p in result.of_type("progress") if p["node"] == data.id]
    assert data_progress and data_progress[-1] == 4  # 2 prompts x 2 images
    assert result.previews >= 3 + 2 + 2  # a student preview per training step, plus the sampler's
    for node in (image, plot):
        png = server.view(result.outputs[node.id]["images"][0])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    text = result.outputs[save.id]["text"][0]
    assert text.startswith("step 5: ")
    lora_name = text.split(": ", 1)[1].split(", ")[0]
    assert lora_name.startswith("e2e_ladd/student_") and lora_name.endswith("_.safetensors")
    assert (server.base_dir / "output" / "e2e_ladd" / "student_autosave_state.safetensors").is_file()

    # the saved LoRA is listed by core's loader and samples through it in a new prompt
    spec = server.object_info()["LoraLoaderModelOnly"]["input"]["required"]["lora_name"]
    assert lora_name in (spec[0] if isinstance(spec[0], list) else spec[1]["options"])
    g2 = Graph()
    ckpt2 = g2.node("QuickstepTestTinyCheckpoint", family="sd1", seed=0)
    loaded = g2.node("LoraLoaderModelOnly", model=ckpt2.out(0), lora_name=lora_name, strength_model=1.0)
    pos2 = g2.node("CLIPTextEncode", clip=ckpt2.out(1), text="a red circle")
    latent2 = g2.node("EmptyLatentImage", width=64, height=64, batch_size=1)
    sampled2 = g2.node("QuickstepTurboKSampler", model=loaded.out(0), positive=pos2.out(0), negative=pos2.out(0),
                       latent_image=latent2.out(0), seed=0, steps=1, cfg=1.0, eta_mode="auto", eta=1.0, denoise=1.0)
    g2.node("PreviewImage", images=g2.node("VAEDecode", samples=sampled2.out(0), vae=ckpt2.out(2)).out(0))
    again = server.run(g2.to_api())
    assert again.status == "success", again.error


def test_cancel_stops_training_within_one_step_and_keeps_the_saved_state(server):
    g, ckpt, data, train = ladd_graph("e2e_ladd_cancel", steps=500, save_every=1, channels=128)
    g.node("QuickstepLADDSave", state=train.out(0), filename_prefix="e2e_ladd_cancel/never")
    cancelled_at = []

    def cancel_after_two_steps(msg, srv):
        d = msg["data"]
        if msg["type"] == "progress" and d["node"] == train.id and d["value"] >= 2 and not cancelled_at:
            cancelled_at.append(d["value"])
            srv.interrupt()

    result = server.run(g.to_api(), on_message=cancel_after_two_steps)
    assert result.status == "interrupted"
    done = max(p["value"] for p in result.of_type("progress") if p["node"] == train.id)
    assert done <= cancelled_at[0] + 1 < 500
    saved = server.base_dir / "output" / "e2e_ladd_cancel" / "student_autosave_state.safetensors"
    assert saved.is_file()
    assert not (server.base_dir / "output" / "e2e_ladd_cancel" / "never_00001_state.safetensors").exists()


def test_ladd_nodes_registered_and_bad_input_rejected(server):
    info = server.object_info()
    for node_id in ("QuickstepLADDDataset", "QuickstepLADDInit", "QuickstepLADDTrain", "QuickstepLADDSave",
                    "QuickstepLADDResume", "QuickstepLADDLossPlot"):
        assert info[node_id]["category"] == "quickstep/ladd"
    g, ckpt, data, train = ladd_graph("e2e_ladd_bad")
    g.node("QuickstepLADDSave", state=train.out(0), filename_prefix="../outside")
    with pytest.raises(PromptRejected) as err:
        server.run(g.to_api())
    assert "filename_prefix" in str(err.value)
