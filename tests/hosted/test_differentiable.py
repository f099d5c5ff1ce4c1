"""Gradients through a ComfyUI MODEL (via core's guider) and VAE, with weights and conditioning created inside
inference mode exactly as loader nodes and CLIPTextEncode create them during a prompt."""

import comfy.sample
import comfy.samplers
import pytest
import torch

from comfy_testpack import tiny_models
from quickstep.samplers import differentiable as diff
from quickstep.samplers import schedule

FAMILIES = ["sd1", "sd2v", "sdxl", "sd3", "flux"]


@pytest.fixture(scope="module")
def loaded():
    """Models built the way a prompt builds them: inside torch.inference_mode()."""
    cache = {}

    def get(family):
        if family not in cache:
            with torch.inference_mode():
                model, clip, vae = tiny_models.build_family(family, seed=3)
                cond = clip.encode_from_tokens_scheduled(clip.tokenize("a red circle"))
                uncond = clip.encode_from_tokens_scheduled(clip.tokenize(""))
            cache[family] = model, vae, cond, uncond
        return cache[family]

    return get


def one_step_x0(model, cond, uncond, cfg, noise, steps=1):
    """x0 of one guided step from the top of a `steps` grid, differentiable in `noise`; a VAE-space latent."""
    sigma = diff.as_normal(schedule.turbo_sigmas(model.get_model_object("model_sampling"), steps)[-2])

    def body(denoise, model_sampling):
        x = model_sampling.noise_scaling(sigma, noise, torch.zeros_like(noise), max_denoise=steps == 1)
        return denoise(x, sigma)

    return model.model.process_latent_out(diff.run_guided(model, cond, uncond, cfg, noise.detach(), body))


@pytest.mark.minimum_pin
@pytest.mark.parametrize("family", FAMILIES)
def test_gradient_reaches_the_noise_through_model_and_vae(loaded, family):
    model, vae, cond, uncond = loaded(family)
    shape = (2, 16 if family in ("sd3", "flux") else 4, 8, 12)
    with torch.inference_mode():  # nodes run inside it
        ready_model, ready_vae = diff.grad_ready(model, "diffusion_model"), diff.grad_ready(vae.patcher)
        with diff.autograd_enabled():
            noise = torch.randn(shape, generator=torch.Generator().manual_seed(0)).requires_grad_()
            images = diff.decode(vae, one_step_x0(ready_model, cond, uncond, 2.0, noise), ready_vae)
            assert images.shape == (2, 64, 96, 3)
            images.mean().backward()
    assert noise.grad is not None and torch.isfinite(noise.grad).all() and noise.grad.abs().sum() > 0


@pytest.mark.parametrize("family", ["sd1", "flux"])
def test_without_the_recipe_autograd_refuses(loaded, family):
    model, _, cond, uncond = loaded(family)
    shape = (1, 16 if family in ("sd3", "flux") else 4, 8, 8)
    with torch.inference_mode(), pytest.raises(RuntimeError, match="[Ii]nference tensors"):
        with diff.autograd_enabled():
            noise = torch.randn(shape).requires_grad_()
            one_step_x0(model, cond, uncond, 1.0, noise).mean().backward()


@pytest.mark.parametrize("family", ["sdxl", "sd3"])
def test_values_equal_core_sampling_and_decoding(loaded, family):
    model, vae, cond, uncond = loaded(family)
    noise = torch.randn(1, 16 if family == "sd3" else 4, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ready = diff.grad_ready(model, "diffusion_model")
        with diff.autograd_enabled():
            ours = one_step_x0(ready, cond, uncond, 1.5, noise.clone().requires_grad_())
            image = diff.decode(vae, ours.detach())
        sigmas = schedule.turbo_sigmas(model.get_model_object("model_sampling"), 1)
        core = comfy.sample.sample_custom(model, noise, 1.5, comfy.samplers.sampler_object("euler"), sigmas, cond,
                                          uncond, torch.zeros_like(noise), disable_pbar=True)
        core_image = vae.decode(core)
    torch.testing.assert_close(ours.detach(), core, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(image.detach(), core_image, rtol=1e-4, atol=1e-4)


def test_shared_model_is_left_untouched(loaded):
    model, _, _, _ = loaded("sd1")
    ready = diff.grad_ready(model, "diffusion_model")
    assert not model.weight_wrapper_patches and ready.weight_wrapper_patches
    assert all(not p.requires_grad for p in model.model.diffusion_model.parameters())


@pytest.mark.minimum_pin
@pytest.mark.parametrize("family", ["sd1", "flux"])
def test_gradient_matches_finite_differences(loaded, family):
    """Flux's in-place residual updates are where a wrong gradient would hide."""
    model, vae, cond, uncond = loaded(family)
    shape = (1, 16 if family == "flux" else 4, 8, 8)
    gen = torch.Generator().manual_seed(2)
    noise, direction = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
    with torch.inference_mode():
        ready_model, ready_vae = diff.grad_ready(model, "diffusion_model"), diff.grad_ready(vae.patcher)
        with diff.autograd_enabled():
            def loss(z):  # from a moderate sigma, where float32 finite differences are accurate
                x0 = one_step_x0(ready_model, cond, uncond, 1.0, z, steps=4)
                return diff.decode(vae, x0, ready_vae).square().mean()

            z = noise.clone().requires_grad_()
            loss(z).backward()
            analytic = float((z.grad * direction).sum())
            eps = 1e-2
            with torch.no_grad():
                numeric = float(loss(noise + eps * direction) - loss(noise - eps * direction)) / (2 * eps)
    assert analytic == pytest.approx(numeric, rel=0.05, abs=1e-6)
