"""Sigma schedules for few-step models, read off the connected model's own `model_sampling`.

Discrete eps/v schedules (SD1.x, SD2.x, SDXL and their Turbo/DMD2/Lightning variants) sample at the trailing integer
timesteps of `grid.discrete_timesteps`, looked up in the model's own sigma table. Flow schedules (SD3/SD3.5, Flux,
FLUX.1-schnell) sample at flow times t from `grid.fractions`, mapped through the model's own time shift
(`ModelSamplingDiscreteFlow.sigma(t * multiplier)`, `ModelSamplingFlux.sigma(t)`), so a shift patched in by core's
ModelSamplingSD3/ModelSamplingFlux nodes is honoured. Core's SDTurboScheduler instead takes 999, 899, 799, ... and
feeds flow models timesteps they do not understand.
"""

from __future__ import annotations

import torch

from . import grid

DISCRETE = "discrete"
FLOW = "flow"


def schedule_kind(model_sampling) -> str:
    """"discrete" or "flow" for the schedules this module supports; a clear error for the others."""
    import comfy.model_sampling as cms

    if isinstance(model_sampling, (cms.ModelSamplingDiscreteFlow, cms.ModelSamplingFlux)):
        return FLOW
    if isinstance(model_sampling, cms.ModelSamplingDiscrete) and not isinstance(model_sampling,
                                                                                cms.StableCascadeSampling):
        return DISCRETE
    raise ValueError(
        f"model: the Turbo schedule supports discrete eps/v models (SD1.x, SD2.x, SDXL) and flow models (SD3, Flux); "
        f"this model samples with {type(model_sampling).__name__}. Use core's BasicScheduler for it instead.")


def default_eta(model_sampling) -> float:
    """How each family's distilled models were meant to be sampled: discrete Turbo/DMD2 models re-noise with fresh
    noise (ADD demo: Euler ancestral; DMD2: LCM rule), flow Turbo models (SD3.5-Turbo, FLUX.1-schnell) step
    deterministically (Euler)."""
    return 1.0 if schedule_kind(model_sampling) == DISCRETE else 0.0


def _num_timesteps(model_sampling) -> int:
    return int(model_sampling.sigmas.shape[0])


def timestep_range(model_sampling) -> tuple[float, float, str]:
    """(lowest, highest, unit) of the custom timesteps this model accepts."""
    if schedule_kind(model_sampling) == DISCRETE:
        return 0.0, float(_num_timesteps(model_sampling) - 1), "integer timesteps"
    return 0.0, 1.0, "flow times"


def sigmas_at(model_sampling, timesteps: list[float]) -> torch.Tensor:
    """Sigmas for grid points in the model's own units (discrete: integer timesteps; flow: t in (0, 1]), plus 0."""
    ts = torch.tensor(timesteps, dtype=torch.float32)
    if schedule_kind(model_sampling) == FLOW:
        ts = ts * getattr(model_sampling, "multiplier", 1.0)  # ModelSamplingFlux takes t itself
    sigmas = model_sampling.sigma(ts).to(torch.float32).cpu()
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def turbo_sigmas(model_sampling, steps: int, denoise: float = 1.0, spacing: str = grid.TRAILING) -> torch.Tensor:
    """The few-step SIGMAS (length steps + 1, ending in 0) on a `grid` spacing."""
    if schedule_kind(model_sampling) == DISCRETE:
        timesteps = grid.discrete_timesteps(steps, denoise, _num_timesteps(model_sampling), spacing)
    else:
        timesteps = grid.fractions(steps, denoise, spacing)
    return sigmas_at(model_sampling, timesteps)


def custom_sigmas(model_sampling, text: str) -> torch.Tensor:
    """SIGMAS for a user's descending timestep list, checked against the model's range."""
    values = grid.parse_custom(text)
    low, high, unit = timestep_range(model_sampling)
    if schedule_kind(model_sampling) == DISCRETE:
        bad = [v for v in values if v != int(v) or not low <= v <= high]
        example = "999, 749, 499, 249"
    else:
        bad = [v for v in values if not low < v <= high]
        example = "1, 0.75, 0.5, 0.25"
    if bad:
        span = f"{low:g}..{high:g}" if unit == "integer timesteps" else f"({low:g}, {high:g}]"
        raise ValueError(f"custom_timesteps: this model takes {unit} in {span} (e.g. '{example}'); "
                         f"{bad} are outside that.")
    return sigmas_at(model_sampling, values)
