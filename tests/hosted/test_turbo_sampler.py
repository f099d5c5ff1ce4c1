"""The Turbo sampler rule run through core's sampling path (CFGGuider, KSAMPLER) on tiny models of every family."""

import comfy.model_management
import comfy.sample
import comfy.samplers
import pytest
import torch

from quickstep.samplers import ksampler, schedule

FAMILIES = ["sd1", "sd2v", "sdxl", "sd3", "flux"]


def channels(family):
    return 16 if family in ("sd3", "flux") else 4


def run(tiny, family, sampler, sigmas, seed=0, batch=1, height=8, width=8, callback=None, latent=None):
    model, clip, _ = tiny(family)
    cond = clip.encode_from_tokens_scheduled(clip.tokenize("a red circle"))
    if latent is None:
        latent = torch.zeros(batch, channels(family), height, width)
    noise = comfy.sample.prepare_noise(latent, seed)
    return comfy.sample.sample_custom(model, noise, 1.0, sampler, sigmas, cond, cond, latent, callback=callback,
                                      disable_pbar=True, seed=seed)


def sigmas_for(tiny, family, steps, denoise=1.0):
    return schedule.turbo_sigmas(tiny(family)[0].get_model_object("model_sampling"), steps, denoise)


def x0_prediction(tiny, family, sigmas, seed=0):
    """What the model predicts from the initial noisy latent: core's euler with a single step to sigma 0."""
    one_step = torch.stack([sigmas[0], torch.zeros(())])
    return run(tiny, family, comfy.samplers.sampler_object("euler"), one_step, seed)


@pytest.mark.minimum_pin
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_one_step_returns_the_x0_prediction(tiny, family, eta):
    sigmas = sigmas_for(tiny, family, 1)
    out = run(tiny, family, ksampler.make_sampler("manual", eta, 1.0), sigmas)
    torch.testing.assert_close(out, x0_prediction(tiny, family, sigmas), rtol=1e-5, atol=1e-5)


@pytest.mark.minimum_pin
@pytest.mark.parametrize("family", ["sd1", "sd2v", "sd3", "flux"])
def test_deterministic_rule_equals_core_euler(tiny, family):
    sigmas = sigmas_for(tiny, family, 4)
    ours = run(tiny, family, ksampler.make_sampler("manual", 0.0, 1.0), sigmas)
    core = run(tiny, family, comfy.samplers.sampler_object("euler"), sigmas)
    torch.testing.assert_close(ours, core, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("family", ["sd1", "sd3"])
def test_fresh_noise_differs_from_deterministic_and_is_seeded(tiny, family):
    sigmas = sigmas_for(tiny, family, 3)
    fresh = ksampler.make_sampler("manual", 1.0, 1.0)
    a, b = run(tiny, family, fresh, sigmas, seed=5), run(tiny, family, fresh, sigmas, seed=5)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    other_seed = run(tiny, family, fresh, sigmas, seed=6)
    deterministic = run(tiny, family, ksampler.make_sampler("manual", 0.0, 1.0), sigmas, seed=5)
    assert not torch.allclose(a, other_seed)
    assert not torch.allclose(a, deterministic)


def test_auto_eta_follows_the_family(tiny):
    auto = ksampler.make_sampler("auto", 0.3, 1.0)
    for family, eta in (("sdxl", 1.0), ("flux", 0.0)):
        sigmas = sigmas_for(tiny, family, 3)
        expected = run(tiny, family, ksampler.make_sampler("manual", eta, 1.0), sigmas, seed=3)
        torch.testing.assert_close(run(tiny, family, auto, sigmas, seed=3), expected, rtol=0, atol=0)


def test_s_noise_scales_only_the_fresh_noise(tiny):
    sigmas = sigmas_for(tiny, "sd1", 2)
    silent = run(tiny, "sd1", ksampler.make_sampler("manual", 1.0, 0.0), sigmas)
    # eta 1 with s_noise 0 re-noises with zero noise: the second step sees its x0 estimate itself
    assert torch.isfinite(silent).all()
    assert not torch.allclose(silent, run(tiny, "sd1", ksampler.make_sampler("manual", 1.0, 1.0), sigmas))


@pytest.mark.parametrize("family", ["sdxl", "flux"])
def test_batch_of_two_non_square(tiny, family):
    sigmas = sigmas_for(tiny, family, 2)
    sampler = ksampler.make_sampler("manual", 0.0, 1.0)
    out = run(tiny, family, sampler, sigmas, batch=2, height=8, width=12)
    assert out.shape == (2, channels(family), 8, 12) and torch.isfinite(out).all()
    assert not torch.allclose(out[0], out[1])  # prepare_noise gives each batch item its own noise


def test_img2img_starts_from_the_input_latent(tiny):
    sigmas = sigmas_for(tiny, "sd1", 2, denoise=0.3)
    assert float(sigmas[0]) < 1.0
    source = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    out = run(tiny, "sd1", ksampler.make_sampler("manual", 0.0, 1.0), sigmas, latent=source)
    full = run(tiny, "sd1", ksampler.make_sampler("manual", 0.0, 1.0), sigmas_for(tiny, "sd1", 2), latent=source)
    assert (out - source).abs().mean() < (full - source).abs().mean()


@pytest.mark.parametrize("steps", [1, 4])
def test_callback_once_per_step(tiny, steps):
    seen = []
    run(tiny, "sd1", ksampler.make_sampler("auto", 1.0, 1.0), sigmas_for(tiny, "sd1", steps),
        callback=lambda step, x0, x, total: seen.append((step, total, tuple(x0.shape))))
    assert [s[0] for s in seen] == list(range(steps))
    assert all(s[1] == steps for s in seen)


def test_cancel_stops_between_steps(tiny):
    calls = []

    def interrupt_after_first(step, x0, x, total):
        calls.append(step)
        comfy.model_management.interrupt_current_processing(True)

    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            run(tiny, "sd1", ksampler.make_sampler("auto", 1.0, 1.0), sigmas_for(tiny, "sd1", 4),
                callback=interrupt_after_first)
    finally:
        comfy.model_management.interrupt_current_processing(False)
    assert calls == [0]


@pytest.mark.parametrize("args,message", [(("sometimes", 1.0, 1.0), "eta_mode must be"),
                                          (("manual", 1.5, 1.0), "eta must be in"),
                                          (("manual", 0.5, -1.0), "s_noise must be")])
def test_bad_sampler_inputs(args, message):
    with pytest.raises(ValueError, match=message):
        ksampler.make_sampler(*args)
