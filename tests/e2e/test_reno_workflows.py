"""ReNO through a real server: a graph from loader nodes (toy checkpoint + toy reward) runs with a progress bar and a
preview per iteration, its noise re-renders in core SamplerCustomAdvanced, bad constants are rejected at /prompt,
and Cancel stops it within one iteration."""

import io

import numpy as np
import pytest
from PIL import Image

from graphs import Graph
from host.server import PromptRejected

PROMPT = "a photo of a red circle and a blue square"


def reno_graph(iterations=4, batch=2, **overrides):
    g = Graph()
    ckpt = g.node("QuickstepToyCheckpoint", model="teacher")
    pos = g.node("CLIPTextEncode", clip=ckpt.out(1), text=PROMPT)
    neg = g.node("CLIPTextEncode", clip=ckpt.out(1), text="")
    latent = g.node("EmptyLatentImage", width=128, height=128, batch_size=batch)
    reward = g.node("QuickstepToyReward")
    inputs = dict(model=ckpt.out(0), vae=ckpt.out(2), positive=pos.out(0), negative=neg.out(0), reward=reward.out(0),
                  latent=latent.out(0), prompt=PROMPT, seed=0, iterations=iterations, learning_rate=5.0, steps=2,
                  cfg=4.0, optimizer="sgd", momentum=0.9, nesterov=True, grad_clip=0.1, reg_weight=0.01,
                  precision="fp32", checkpointing="off")
    inputs.update(overrides)
    reno = g.node("QuickstepReNO", **inputs)
    return g, ckpt, pos, neg, latent, reno


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def test_reno_registered_under_quickstep_reno(server):
    info = server.object_info()["QuickstepReNO"]
    assert info["category"] == "quickstep/reno"
    assert info["output"] == ["LATENT", "IMAGE", "NOISE", "IMAGE", "STRING"]
    assert "REWARD_MODEL" in info["input"]["required"]["reward"][0].split(",")


def test_reno_from_loader_nodes_with_progress_previews_and_a_rerender(server):
    g, ckpt, pos, neg, latent, reno = reno_graph(iterations=4)
    save = g.node("SaveImage", images=reno.out(1), filename_prefix="quickstep/e2e_reno")
    plot = g.node("PreviewImage", images=reno.out(3))
    guider = g.node("CFGGuider", model=ckpt.out(0), positive=pos.out(0), negative=neg.out(0), cfg=4.0)
    sampler = g.node("QuickstepTurboSampler", eta_mode="manual", eta=0.0, s_noise=1.0)
    sigmas = g.node("QuickstepTurboScheduler", model=ckpt.out(0), steps=2, denoise=1.0, grid="trailing",
                    custom_timesteps="")
    rerender = g.node("SamplerCustomAdvanced", noise=reno.out(2), guider=guider.out(0), sampler=sampler.out(0),
                      sigmas=sigmas.out(0), latent_image=latent.out(0))
    again = g.node("SaveImage", images=g.node("VAEDecode", samples=rerender.out(0), vae=ckpt.out(2)).out(0),
                   filename_prefix="quickstep/e2e_reno_rerender")
    result = server.run(g.to_api())
    assert result.status == "success", result.error
    progress = [p for p in result.of_type("progress") if p["node"] == reno.id]
    assert [p["value"] for p in progress][-4:] == [1, 2, 3, 4] and progress[-1]["max"] == 4
    assert result.previews >= 4  # one preview of the best image per iteration (plus the re-render's)
    images = result.outputs[save.id]["images"]
    assert len(images) == 2
    assert server.view(images[0])[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(result.outputs[plot.id]["images"]) == 1
    # the Turbo re-render of the noise output is the best latent ReNO decoded: the same pixels
    ours, theirs = pixels(server.view(images[0])), pixels(server.view(result.outputs[again.id]["images"][0]))
    assert ours.shape == theirs.shape == (64, 64, 3) and np.abs(ours - theirs).max() <= 1


@pytest.mark.parametrize("overrides,message", [
    ({"steps": 6}, "steps must be an integer from 1 to 4"),
    ({"learning_rate": -1.0}, "learning_rate must be a number from"),
    ({"prompt": ""}, "prompt: ReNO needs the text"),
    ({"iterations": 0}, "iterations must be an integer from 1"),
])
def test_bad_constants_rejected_before_running(server, overrides, message):
    g, *_ , reno = reno_graph(**overrides)
    g.node("PreviewImage", images=reno.out(1))
    with pytest.raises(PromptRejected) as err:
        server.run(g.to_api())
    assert message in str(err.value)


def test_interrupt_stops_within_one_iteration(server):
    g, *_, reno = reno_graph(iterations=40, batch=1)
    g.node("PreviewImage", images=reno.out(1))
    cancelled_at = []

    def cancel_on_progress(msg, srv):
        data = msg.get("data", {})
        if msg["type"] == "progress" and data["node"] == reno.id and data["value"] >= 2 and not cancelled_at:
            cancelled_at.append(data["value"])
            srv.interrupt()

    result = server.run(g.to_api(), on_message=cancel_on_progress)
    assert result.status == "interrupted"
    done = max(p["value"] for p in result.of_type("progress") if p["node"] == reno.id)
    assert done <= cancelled_at[0] + 1 < 40
