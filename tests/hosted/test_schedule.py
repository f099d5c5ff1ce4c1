"""Turbo sigmas equal values computed here, independently of ComfyUI, from each family's published schedule."""

import math

import comfy.model_sampling
import pytest
import torch

from quickstep.samplers import grid, schedule

pytestmark = pytest.mark.minimum_pin


def ddpm_sigmas() -> torch.Tensor:
    """SD1.x/SD2.x/SDXL: 'scaled linear' betas 0.00085..0.012 over 1000 steps, sigma = sqrt((1 - abar) / abar)."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    abar = torch.cumprod(1 - betas, 0)
    return ((1 - abar) / abar).sqrt()


def sd3_sigma(t: float, shift: float = 3.0) -> float:
    return shift * t / (1 + (shift - 1) * t)


def flux_sigma(t: float, mu: float = 1.15) -> float:
    return math.exp(mu) / (math.exp(mu) + (1 / t - 1))


def expected(family: str, steps: int, denoise: float) -> list[float]:
    if family in ("sd1", "sd2v", "sdxl"):
        table = ddpm_sigmas()
        ts = [round(denoise * (steps - i) / steps * 1000) - 1 for i in range(steps)]
        return [float(table[t]) for t in ts] + [0.0]
    fn = sd3_sigma if family == "sd3" else flux_sigma
    return [fn(denoise * (steps - i) / steps) for i in range(steps)] + [0.0]


@pytest.mark.parametrize("family", ["sd1", "sd2v", "sdxl", "sd3", "flux"])
@pytest.mark.parametrize("steps,denoise", [(1, 1.0), (2, 1.0), (3, 1.0), (4, 1.0), (2, 0.5), (4, 0.6)])
def test_sigmas_match_independent_schedule(tiny, family, steps, denoise):
    model, _, _ = tiny(family)
    sigmas = schedule.turbo_sigmas(model.get_model_object("model_sampling"), steps, denoise)
    assert sigmas.shape == (steps + 1,)
    assert sigmas.tolist() == pytest.approx(expected(family, steps, denoise), rel=1e-4, abs=1e-6)


def test_four_step_values_are_the_published_trailing_grid(tiny):
    sigmas = schedule.turbo_sigmas(tiny("sdxl")[0].get_model_object("model_sampling"), 4)
    assert sigmas.tolist() == pytest.approx([14.6146, 4.0817, 1.6129, 0.6932, 0.0], abs=1e-3)
    flow = schedule.turbo_sigmas(tiny("sd3")[0].get_model_object("model_sampling"), 4)
    assert flow.tolist() == pytest.approx([1.0, 0.9, 0.75, 0.5, 0.0], abs=1e-4)


def test_add_demo_grid_matches_core_sdturbo_scheduler_on_discrete_models(tiny):
    ms = tiny("sd1")[0].get_model_object("model_sampling")
    core = ms.sigma(torch.tensor([999, 899, 799, 699])).tolist() + [0.0]
    assert schedule.turbo_sigmas(ms, 4, 1.0, grid.ADD_DEMO).tolist() == pytest.approx(core, rel=1e-5)


def test_patched_shift_is_honoured(tiny):
    model = tiny("sd3")[0].clone()
    patched = comfy.model_sampling.ModelSamplingDiscreteFlow(model.model.model_config)
    patched.set_parameters(shift=6.0, multiplier=1000)
    model.add_object_patch("model_sampling", patched)
    sigmas = schedule.turbo_sigmas(model.get_model_object("model_sampling"), 2)
    assert sigmas.tolist() == pytest.approx([1.0, sd3_sigma(0.5, 6.0), 0.0], rel=1e-5)


def test_custom_timesteps(tiny):
    ms = tiny("sd1")[0].get_model_object("model_sampling")
    assert schedule.custom_sigmas(ms, "999, 500").tolist() == pytest.approx(
        [float(ddpm_sigmas()[999]), float(ddpm_sigmas()[500]), 0.0], rel=1e-4)
    flux = tiny("flux")[0].get_model_object("model_sampling")
    assert schedule.custom_sigmas(flux, "1 0.4").tolist() == pytest.approx([1.0, flux_sigma(0.4), 0.0], rel=1e-4)


@pytest.mark.parametrize("family,text,message", [
    ("sd1", "499, 999", "strictly decreasing"),
    ("sd1", "1200, 500", "integer timesteps in 0..999"),
    ("sd1", "999.5", "integer timesteps"),
    ("sd3", "999, 500", "flow times in (0, 1]"),
    ("sd3", "one, two", "must be numbers"),
    ("sd3", " , ", "empty"),
])
def test_bad_custom_timesteps(tiny, family, text, message):
    with pytest.raises(ValueError, match="custom_timesteps") as err:
        schedule.custom_sigmas(tiny(family)[0].get_model_object("model_sampling"), text)
    assert message in str(err.value)


@pytest.mark.parametrize("steps,denoise,message", [(0, 1.0, "steps must be"), (9, 1.0, "steps must be"),
                                                   (2, 0.0, "denoise must be"), (2, 1.5, "denoise must be")])
def test_bad_steps_or_denoise(tiny, steps, denoise, message):
    with pytest.raises(ValueError, match=message):
        schedule.turbo_sigmas(tiny("sd1")[0].get_model_object("model_sampling"), steps, denoise)


def test_unsupported_model_sampling_is_named(tiny):
    model = tiny("sd1")[0].clone()

    class EDM(comfy.model_sampling.ModelSamplingContinuousEDM, comfy.model_sampling.EPS):
        pass

    model.add_object_patch("model_sampling", EDM(model.model.model_config))
    with pytest.raises(ValueError, match="ModelSamplingContinuousEDM|EDM.*BasicScheduler"):
        schedule.turbo_sigmas(model.get_model_object("model_sampling"), 2)


def test_family_default_eta(tiny):
    assert schedule.default_eta(tiny("sdxl")[0].get_model_object("model_sampling")) == 1.0
    assert schedule.default_eta(tiny("flux")[0].get_model_object("model_sampling")) == 0.0
