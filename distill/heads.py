"""Discriminator heads on teacher features (LADD, Sauer et al. 2024, Sec. 3.1: "independent discriminator heads" on
token features of several blocks, reshaped to 2-D, conditioned on the noise level and the pooled text embedding).

Each head: 1x1 projection, FiLM (scale/shift) from the shared condition embedding, two 3x3 conv + GroupNorm + SiLU
layers, a 1x1 logit map averaged over the grid: one logit per sample and head. GroupNorm rather than the BatchNorm of
StyleGAN-T/ADD heads, so batch size 1 works. The condition is a sinusoidal embedding of the re-noise level as flow
time t_hat in [0, 1] (the same scale for every model family) plus a projection of the pooled text embedding.
"""

from __future__ import annotations

import math

import torch
from torch import nn

FREQS = 64


def _groups(width: int) -> int:
    return next(g for g in (32, 16, 8, 4, 2, 1) if width % g == 0)


def time_embedding(t: torch.Tensor) -> torch.Tensor:
    """[B] flow times in [0, 1] -> [B, 2 * FREQS] sinusoids (periods from 1/1000 to 1 of the range)."""
    freqs = torch.exp(torch.linspace(0, math.log(1000.0), FREQS, device=t.device, dtype=torch.float32))
    angles = t.float()[:, None] * freqs[None] * math.pi
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class Head(nn.Module):
    def __init__(self, channels: int, cond_dim: int, width: int):
        super().__init__()
        self.proj = nn.Conv2d(channels, width, 1)
        self.film = nn.Linear(cond_dim, 2 * width)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), nn.GroupNorm(_groups(width), width), nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.GroupNorm(_groups(width), width), nn.SiLU())
        self.out = nn.Conv2d(width, 1, 1)

    def forward(self, feature: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.proj(feature.float())
        scale, shift = self.film(cond)[:, :, None, None].chunk(2, dim=1)
        h = self.body(h * (1 + scale) + shift)
        return self.out(h).mean(dim=(1, 2, 3))


class Discriminator(nn.Module):
    """All heads plus the shared condition embedding; forward gives logits [B, heads]."""

    def __init__(self, channels: list[int], pooled_dim: int, width: int = 64, cond_dim: int = 128):
        super().__init__()
        self.time = nn.Sequential(nn.Linear(2 * FREQS, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))
        self.pooled = nn.Linear(pooled_dim, cond_dim) if pooled_dim > 0 else None
        self.heads = nn.ModuleList(Head(c, cond_dim, width) for c in channels)

    def forward(self, features: list[torch.Tensor], t_hat: torch.Tensor, pooled: torch.Tensor | None) -> torch.Tensor:
        cond = self.time(time_embedding(t_hat))
        if self.pooled is not None and pooled is not None:
            cond = cond + self.pooled(pooled.float())
        return torch.stack([head(f, cond) for head, f in zip(self.heads, features, strict=True)], dim=1)
