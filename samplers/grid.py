"""Few-step timestep grids: the single source of truth for the Turbo sampler and the LADD trainer.

A grid is a list of descending fractions of the schedule, t_i = denoise * (steps - i) / steps for i < steps
("trailing" spacing: it always starts at the top of the kept range and never reaches 0). With 4 steps and denoise 1
this is LADD's student grid t = 1, .75, .5, .25 (Sauer et al. 2024, arXiv:2403.12015, Sec. 3.2) and, on a
1000-step discrete schedule, diffusers' trailing timesteps 999, 749, 499, 249 used by SD-Turbo/SDXL-Turbo, DMD2,
SDXL-Lightning and Hyper-SD. Pure Python: no torch, no ComfyUI.
"""

from __future__ import annotations

import math

MIN_STEPS = 1
MAX_STEPS = 8


def check_steps_denoise(steps: int, denoise: float) -> None:
    if not isinstance(steps, int) or not MIN_STEPS <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be an integer from {MIN_STEPS} to {MAX_STEPS} (few-step models use 1-4); "
                         f"got {steps!r}. Use core's BasicScheduler for longer schedules.")
    if isinstance(denoise, bool) or not isinstance(denoise, (int, float)) or not 0.0 < denoise <= 1.0:
        raise ValueError(f"denoise must be in (0, 1] (1 = text-to-image, lower = img2img strength); got {denoise!r}.")


TRAILING = "trailing"
ADD_DEMO = "add_demo"
SPACINGS = (TRAILING, ADD_DEMO)


def fractions(steps: int, denoise: float = 1.0, spacing: str = TRAILING) -> list[float]:
    """Descending fractions of the schedule in (0, denoise].

    trailing: denoise * (steps - i) / steps. add_demo: Stability's ADD demo and core SDTurboScheduler spacing, a fixed
    ten-point grid 1.0, 0.9, 0.8, ... whose first `steps` points below `denoise` are used.
    """
    check_steps_denoise(steps, denoise)
    if spacing == TRAILING:
        return [denoise * (steps - i) / steps for i in range(steps)]
    if spacing == ADD_DEMO:
        top = int(10 * denoise + 1e-9)
        if steps > top:
            raise ValueError(f"grid add_demo walks down a 10-point grid from {top / 10:g}, so with denoise {denoise:g} "
                             f"it has at most {top} steps; got steps {steps}. Lower steps or use the trailing grid.")
        return [(top - i) / 10 for i in range(steps)]
    raise ValueError(f"grid must be one of {SPACINGS}; got {spacing!r}.")


def discrete_timesteps(steps: int, denoise: float = 1.0, num_timesteps: int = 1000,
                       spacing: str = TRAILING) -> list[int]:
    """Integer timesteps of a discrete (DDPM) schedule: 999, 749, 499, 249 for 4 trailing steps on 1000."""
    return [max(0, round(f * num_timesteps) - 1) for f in fractions(steps, denoise, spacing)]


def parse_custom(text: str) -> list[float]:
    """Parse a comma- or space-separated list of timesteps; raise a clear error on anything else."""
    parts = [p for p in text.replace(",", " ").split() if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"custom_timesteps must be numbers separated by commas, e.g. '999, 749, 499, 249'; "
                         f"got {text[:80]!r}.") from None
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"custom_timesteps must be finite numbers (no nan or inf), e.g. '999, 749, 499, 249'; "
                         f"got {text[:80]!r}.")
    if not values:
        raise ValueError("custom_timesteps is empty; give a descending list such as '999, 749, 499, 249', "
                         "or leave it blank to use the grid.")
    if len(values) > MAX_STEPS:
        raise ValueError(f"custom_timesteps has {len(values)} entries; at most {MAX_STEPS} are allowed.")
    if any(b >= a for a, b in zip(values, values[1:], strict=False)):
        raise ValueError(f"custom_timesteps must be strictly decreasing (highest noise first); got {values}.")
    return values
