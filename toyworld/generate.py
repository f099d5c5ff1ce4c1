"""Sample the toy family through ComfyUI's own sampling entry points (what KSampler / SamplerCustom call)."""

from __future__ import annotations

import numpy as np
import torch

from .models import LATENT


def encode(clip, text: str):
    """CLIPTextEncode's output for `text`."""
    tokens = clip.tokenize(text)
    return clip.encode_from_tokens_scheduled(tokens)


@torch.no_grad()
def sample(model, clip, vae, prompt: str, seed: int, batch: int = 4, steps: int = 25, cfg: float = 4.0,
           schedule: str = "core", sampler_name: str = "euler", scheduler: str = "normal") -> np.ndarray:
    """`batch` images [B, 64, 64, 3] in [0, 1] for `prompt`.

    schedule core: `comfy.sample.sample` with `sampler_name`/`scheduler` (KSampler). schedule turbo: Quickstep's
    Turbo sigmas and sampler through `comfy.sample.sample_custom` (SamplerCustom), eta auto.
    """
    import comfy.sample

    positive, negative = encode(clip, prompt), encode(clip, "")
    latent = torch.zeros(batch, 4, LATENT, LATENT)
    noise = comfy.sample.prepare_noise(latent, seed)
    if schedule == "core":
        out = comfy.sample.sample(model, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent,
                                  seed=seed, disable_pbar=True)
    elif schedule == "turbo":
        from ..samplers.ksampler import make_sampler, make_sigmas

        sigmas = make_sigmas(model, steps, 1.0)
        out = comfy.sample.sample_custom(model, noise, cfg, make_sampler("auto", 1.0, 1.0), sigmas, positive,
                                         negative, latent, seed=seed, disable_pbar=True)
    else:
        raise ValueError(f"schedule must be 'core' or 'turbo'; got {schedule!r}.")
    images = vae.decode(out)
    return images.reshape(-1, *images.shape[-3:]).float().clamp(0, 1).cpu().numpy()
