"""Timesteps of LADD training (Sauer et al. 2024, Sec. 3.2 and 4).

Student: the same grid the Turbo sampler samples (`samplers/grid.py` through `samplers/schedule.py`: trailing
timesteps 999, 749, 499, 249 on discrete schedules, flow times 1, .75, .5, .25 through the model's shift), chosen with
p = [0.7, 0.1, 0.1, 0.1] (the pure-noise step most often), after a warm-up on the low-noise half of the grid
(p = [0, 0, 0.5, 0.5]). Re-noise level of the discriminator input: t_hat ~ logit-normal(m=1, s=1) in flow time (skewed
to high noise, i.e. global structure), mapped to each family's sigma: flow models through their own shift, discrete
ones at timestep t_hat * (T - 1) of their sigma table (interpolated in log sigma by `ModelSamplingDiscrete.sigma`).
"""

from __future__ import annotations

import torch

from ..samplers import schedule

MAIN_TOP = 0.7


def grid_sigmas(model_sampling, steps: int) -> torch.Tensor:
    """The student's sigmas, highest first, without the final 0: exactly the Turbo sampler's `steps` grid."""
    return schedule.turbo_sigmas(model_sampling, steps)[:-1]


def grid_probabilities(steps: int, warmup: bool) -> list[float]:
    """[0.7, 0.1, 0.1, 0.1] for 4 steps (the rest share 0.3 evenly for other lengths); warm-up: the low-noise half."""
    if steps == 1:
        return [1.0]
    if warmup:
        low = steps - steps // 2  # the high-noise steps, skipped in warm-up
        return [0.0] * low + [1.0 / (steps - low)] * (steps - low)
    return [MAIN_TOP] + [(1 - MAIN_TOP) / (steps - 1)] * (steps - 1)


def sample_grid_index(batch: int, steps: int, warmup: bool, generator: torch.Generator) -> torch.Tensor:
    probs = torch.tensor(grid_probabilities(steps, warmup))
    return torch.multinomial(probs, batch, replacement=True, generator=generator)


def sample_flow_time(batch: int, mean: float, std: float, generator: torch.Generator) -> torch.Tensor:
    """t_hat = sigmoid(N(mean, std)), clamped away from 0 and 1."""
    return torch.sigmoid(torch.randn(batch, generator=generator) * std + mean).clamp(1e-3, 1 - 1e-3)


def flow_time_to_sigma(model_sampling, t: torch.Tensor) -> torch.Tensor:
    """Each family's sigma at flow time t (a fraction of its schedule)."""
    if schedule.schedule_kind(model_sampling) == schedule.FLOW:
        return model_sampling.sigma(t * getattr(model_sampling, "multiplier", 1.0)).float()
    steps = int(model_sampling.sigmas.shape[0])
    return model_sampling.sigma(t * (steps - 1)).float()
