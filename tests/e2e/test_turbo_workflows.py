"""Turbo nodes through the real execution engine: API-format workflows POSTed to /prompt."""

import pytest

from graphs import Graph, tiny_text_to_image
from host.server import PromptRejected


def save_and_check(server, g, ckpt, latent_node, prefix):
    image = g.node("VAEDecode", samples=latent_node.out(0), vae=ckpt.out(2))
    save = g.node("SaveImage", images=image.out(0), filename_prefix=prefix)
    result = server.run(g.to_api())
    assert result.status == "success", result.error
    images = result.outputs[save.id]["images"]
    assert len(images) == 1
    png = server.view(images[0])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return result


@pytest.mark.minimum_pin
def test_nodes_registered(server):
    info = server.object_info()
    for node_id in ("QuickstepTurboScheduler", "QuickstepTurboSampler", "QuickstepTurboKSampler"):
        assert node_id in info, f"{node_id} missing from /object_info"
        assert info[node_id]["category"].startswith("quickstep/")


@pytest.mark.minimum_pin
@pytest.mark.parametrize("family", ["sd1", "flux"])
def test_scheduler_and_sampler_in_core_sampler_custom(server, family):
    g, ckpt, pos, neg, latent = tiny_text_to_image(family)
    sigmas = g.node("QuickstepTurboScheduler", model=ckpt.out(0), steps=3, denoise=1.0, grid="trailing",
                    custom_timesteps="")
    sampler = g.node("QuickstepTurboSampler", eta_mode="auto", eta=1.0, s_noise=1.0)
    sampled = g.node("SamplerCustom", model=ckpt.out(0), add_noise=True, noise_seed=7, cfg=1.0, positive=pos.out(0),
                     negative=neg.out(0), sampler=sampler.out(0), sigmas=sigmas.out(0), latent_image=latent.out(0))
    result = save_and_check(server, g, ckpt, sampled, f"turbo_custom_{family}")
    progress = [m for m in result.of_type("progress") if m["node"] == sampled.id]
    assert [p["value"] for p in progress][-1] == 3 and progress[-1]["max"] == 3


def test_turbo_ksampler_with_cfg(server):
    g, ckpt, pos, neg, latent = tiny_text_to_image("sdxl")
    sampled = g.node("QuickstepTurboKSampler", model=ckpt.out(0), positive=pos.out(0), negative=neg.out(0),
                     latent_image=latent.out(0), seed=1, steps=4, cfg=2.0, eta_mode="manual", eta=0.5, denoise=1.0)
    result = save_and_check(server, g, ckpt, sampled, "turbo_ksampler")
    values = [p["value"] for p in result.of_type("progress") if p["node"] == sampled.id]
    assert values == [1, 2, 3, 4]
    assert result.previews == 4  # one latent preview frame per step


def test_scheduler_in_sampler_custom_advanced(server):
    g, ckpt, pos, neg, latent = tiny_text_to_image("sd3")
    sigmas = g.node("QuickstepTurboScheduler", model=ckpt.out(0), steps=2, denoise=1.0, grid="trailing",
                    custom_timesteps="1, 0.5")
    sampler = g.node("QuickstepTurboSampler", eta_mode="manual", eta=0.0, s_noise=1.0)
    noise = g.node("RandomNoise", noise_seed=3)
    guider = g.node("BasicGuider", model=ckpt.out(0), conditioning=pos.out(0))
    sampled = g.node("SamplerCustomAdvanced", noise=noise.out(0), guider=guider.out(0), sampler=sampler.out(0),
                     sigmas=sigmas.out(0), latent_image=latent.out(0))
    save_and_check(server, g, ckpt, sampled, "turbo_advanced")


def test_bad_custom_timesteps_fail_with_the_message(server):
    g, ckpt, pos, neg, latent = tiny_text_to_image("sd1")
    sigmas = g.node("QuickstepTurboScheduler", model=ckpt.out(0), steps=2, denoise=1.0, grid="trailing",
                    custom_timesteps="2000, 10")
    sampler = g.node("QuickstepTurboSampler", eta_mode="auto", eta=1.0, s_noise=1.0)
    sampled = g.node("SamplerCustom", model=ckpt.out(0), add_noise=True, noise_seed=0, cfg=1.0, positive=pos.out(0),
                     negative=neg.out(0), sampler=sampler.out(0), sigmas=sigmas.out(0), latent_image=latent.out(0))
    g.node("PreviewImage", images=g.node("VAEDecode", samples=sampled.out(0), vae=ckpt.out(2)).out(0))
    result = server.run(g.to_api())
    assert result.status == "error"
    assert "integer timesteps in 0..999" in result.error["exception_message"]
    assert result.error["node_type"] == "QuickstepTurboScheduler"


def test_bad_eta_rejected_before_running(server):
    g, ckpt, pos, neg, latent = tiny_text_to_image("sd1")
    sampler = g.node("QuickstepTurboSampler", eta_mode="manual", eta=3.0, s_noise=1.0)
    sigmas = g.node("QuickstepTurboScheduler", model=ckpt.out(0), steps=1, denoise=1.0, grid="trailing",
                    custom_timesteps="")
    sampled = g.node("SamplerCustom", model=ckpt.out(0), add_noise=True, noise_seed=0, cfg=1.0, positive=pos.out(0),
                     negative=neg.out(0), sampler=sampler.out(0), sigmas=sigmas.out(0), latent_image=latent.out(0))
    g.node("PreviewImage", images=g.node("VAEDecode", samples=sampled.out(0), vae=ckpt.out(2)).out(0))
    with pytest.raises(PromptRejected) as err:
        server.run(g.to_api())
    assert "eta" in str(err.value)


@pytest.mark.parametrize("inputs,message", [
    ({"custom_timesteps": "249, 499"}, "strictly decreasing"),
    ({"grid": "add_demo", "steps": 4, "denoise": 0.3}, "at most 3 steps"),
])
def test_bad_schedule_rejected_before_running(server, inputs, message):
    g, ckpt, pos, neg, latent = tiny_text_to_image("sd1")
    sigmas = g.node("QuickstepTurboScheduler", **{"model": ckpt.out(0), "steps": 2, "denoise": 1.0,
                                                   "grid": "trailing", "custom_timesteps": "", **inputs})
    sampler = g.node("QuickstepTurboSampler", eta_mode="auto", eta=1.0, s_noise=1.0)
    sampled = g.node("SamplerCustom", model=ckpt.out(0), add_noise=True, noise_seed=0, cfg=1.0, positive=pos.out(0),
                     negative=neg.out(0), sampler=sampler.out(0), sigmas=sigmas.out(0), latent_image=latent.out(0))
    g.node("PreviewImage", images=g.node("VAEDecode", samples=sampled.out(0), vae=ckpt.out(2)).out(0))
    with pytest.raises(PromptRejected) as err:
        server.run(g.to_api())
    assert message in str(err.value)


def test_interrupt_stops_within_one_step(server):
    """POST /interrupt (the UI's Cancel) after the first step's progress: the sampler stops at the next step."""
    g = Graph()
    ckpt = g.node("QuickstepTestTinyCheckpoint", family="sd1", seed=0, channels=128)  # ~0.2 s a step here
    pos = g.node("CLIPTextEncode", clip=ckpt.out(1), text="a red circle")
    latent = g.node("EmptyLatentImage", width=256, height=256, batch_size=1)
    sampled = g.node("QuickstepTurboKSampler", model=ckpt.out(0), positive=pos.out(0), negative=pos.out(0),
                     latent_image=latent.out(0), seed=0, steps=8, cfg=1.0, eta_mode="auto", eta=1.0, denoise=1.0)
    g.node("PreviewImage", images=g.node("VAEDecode", samples=sampled.out(0), vae=ckpt.out(2)).out(0))

    cancelled_at = []

    def cancel_on_first_progress(msg, srv):
        data = msg["data"]
        if msg["type"] == "progress" and data["node"] == sampled.id and not cancelled_at and data["value"] < 8:
            cancelled_at.append(data["value"])
            srv.interrupt()

    result = server.run(g.to_api(), on_message=cancel_on_first_progress)
    assert result.status == "interrupted"
    steps_done = max(p["value"] for p in result.of_type("progress") if p["node"] == sampled.id)
    # the interrupt lands during the next step at the latest, and the step after it never starts
    assert steps_done <= cancelled_at[0] + 1 < 8
