"""The Turbo rule and grid as core ComfyUI objects: a KSAMPLER and a SIGMAS tensor for a loaded MODEL.

The one place nodes, the toy world and benchmarks get them from, so a node and a script sample the same way.
"""

from __future__ import annotations

import math

import comfy.model_management
import comfy.samplers

from . import grid as timestep_grid
from . import schedule
from .turbo import sample_turbo

ETA_MODES = ("auto", "manual")


def make_sigmas(model, steps: int, denoise: float, spacing: str = timestep_grid.TRAILING, custom_timesteps: str = ""):
    """The Turbo grid of `model`'s own model_sampling (or the user's timesteps) as SIGMAS."""
    ms = model.get_model_object("model_sampling")
    if custom_timesteps.strip():
        return schedule.custom_sigmas(ms, custom_timesteps)
    return schedule.turbo_sigmas(ms, steps, denoise, spacing)


def make_sampler(eta_mode: str, eta: float, s_noise: float) -> comfy.samplers.KSAMPLER:
    if not isinstance(eta_mode, str) or eta_mode not in ETA_MODES:
        raise ValueError(f"eta_mode must be one of {ETA_MODES}; got {eta_mode!r}.")
    if not 0.0 <= eta <= 1.0:  # also false for NaN
        raise ValueError(f"eta must be in [0, 1] (0 = deterministic Euler/DDIM, 1 = fresh noise); got {eta}.")
    if not (s_noise >= 0 and math.isfinite(s_noise)):
        raise ValueError(f"s_noise must be a finite number >= 0 (1 = unit noise); got {s_noise}.")
    return TurboKSAMPLER(None if eta_mode == "auto" else eta, s_noise)


class TurboKSAMPLER(comfy.samplers.KSAMPLER):
    """KSAMPLER running `sample_turbo`; eta None picks the family default from the model it is run on."""

    def __init__(self, eta: float | None, s_noise: float):
        super().__init__(sample_turbo, extra_options={"s_noise": s_noise,
                         "check_interrupt": comfy.model_management.throw_exception_if_processing_interrupted})
        self.eta = eta

    def sample(self, model_wrap, sigmas, *args, **kwargs):
        ms = model_wrap.inner_model.model_sampling
        self.extra_options["eta"] = schedule.default_eta(ms) if self.eta is None else self.eta
        return super().sample(model_wrap, sigmas, *args, **kwargs)
