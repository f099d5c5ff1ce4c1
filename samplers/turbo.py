"""The Turbo sampler rule: predict x0, then re-noise to the next sigma with the model's own noise scaling.

    x0      = D(x_i, sigma_i)
    eps_hat = (x_i - s(sigma_i, 0, x0)) / s(sigma_i, 1, 0)            (noise implied by the model)
    eps     = sqrt(1 - eta^2) * eps_hat + eta * s_noise * z,  z ~ N(0, I)
    x_{i+1} = s(sigma_{i+1}, eps, x0)

where s(sigma, noise, x0) is `model_sampling.noise_scaling`, linear in noise and x0 for every ComfyUI prediction type
(EPS/V: x0 + sigma*noise; flow CONST: (1 - sigma)*x0 + sigma*noise), so one rule covers eps, v and flow models.
eta = 0 is DDIM/Euler (deterministic: SD3.5-Turbo, FLUX.1-schnell, SDXL-Lightning); eta = 1 is the LCM/consistency
multistep rule of LCM (Luo et al. 2023, Alg. 1), DMD2 and the ADD demo's ancestral sampler; values in between are
TCD's gamma (Zheng et al. 2024, Eq. 9). The last step returns x0 when the final sigma is 0, so one step returns the
x0 prediction whatever eta is.
"""

from __future__ import annotations

import torch
from tqdm.auto import trange


def implied_noise(model_sampling, sigma: torch.Tensor, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """The noise that, scaled by the model's own noise_scaling at `sigma`, turns x0 into x."""
    offset = model_sampling.noise_scaling(sigma, torch.zeros_like(x), x0)
    scale = model_sampling.noise_scaling(sigma, torch.ones_like(x[:1]), torch.zeros_like(x[:1]))
    return (x - offset) / scale


def fresh_noise(shape, like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    # drawn on the CPU so the same seed gives the same image on every device
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(like.device, like.dtype)


SEED_RANGE = 1 << 64  # torch.Generator.manual_seed takes 0..2**64 - 1, the seed widgets' range


def fresh_noise_seed(seed) -> int:
    """The seed of the between-steps noise: one past the initial noise's seed (so the two differ), wrapped into
    torch's range so the widgets' largest seed 2**64 - 1 works (core passes seeds to torch.manual_seed as they are)."""
    return 0 if seed is None else (int(seed) + 1) % SEED_RANGE


@torch.no_grad()
def sample_turbo(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                 check_interrupt=None):
    """k-diffusion-style sampler function (the contract of `comfy.samplers.KSAMPLER`).

    `model(x, sigma)` returns the x0 prediction; its `inner_model.inner_model.model_sampling` is the schedule.
    """
    extra_args = {} if extra_args is None else extra_args
    model_sampling = model.inner_model.inner_model.model_sampling
    seed = extra_args.get("seed")
    generator = torch.Generator().manual_seed(fresh_noise_seed(seed))
    s_in = x.new_ones([x.shape[0]])
    keep = (1.0 - eta * eta) ** 0.5
    for i in trange(len(sigmas) - 1, disable=disable):
        if check_interrupt is not None:
            check_interrupt()
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        x0 = model(x, sigma * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma, "denoised": x0})
        if sigma_next == 0:
            x = x0
            continue
        noise = implied_noise(model_sampling, sigma, x, x0) if keep > 0 else torch.zeros_like(x)
        if eta > 0:
            noise = keep * noise + eta * s_noise * fresh_noise(x.shape, x, generator)
        x = model_sampling.noise_scaling(sigma_next, noise, x0)
    return x
