"""Adversarial losses on the heads' logits [B, heads] (summed over heads, averaged over the batch).

hinge (LADD, Sauer et al. 2024, Sec. 3.1, as in ADD and StyleGAN-T): D: relu(1 - D(real)) + relu(1 + D(fake));
G: -D(fake). non_saturating (Goodfellow et al. 2014, Sec. 3; FastGen, DMD2): D: softplus(-D(real)) + softplus(D(fake));
G: softplus(-D(fake)); it keeps a gradient where hinge saturates (a public run at batch size 1 collapsed with hinge).
R1 (Mescheder et al. 2018, Eq. 9) on the heads' inputs, the real teacher features (as SANA-Sprint does).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

HINGE, NON_SATURATING = "hinge", "non_saturating"
LOSSES = (HINGE, NON_SATURATING)


def check(loss: str) -> None:
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}; got {loss!r}.")


def discriminator_loss(real: torch.Tensor, fake: torch.Tensor, loss: str = HINGE) -> torch.Tensor:
    check(loss)
    if loss == HINGE:
        per = F.relu(1 - real) + F.relu(1 + fake)
    else:
        per = F.softplus(-real) + F.softplus(fake)
    return per.sum(dim=1).mean()


def generator_loss(fake: torch.Tensor, loss: str = HINGE) -> torch.Tensor:
    check(loss)
    per = -fake if loss == HINGE else F.softplus(-fake)
    return per.sum(dim=1).mean()


def r1_penalty(real_logits: torch.Tensor, inputs: list[torch.Tensor]) -> torch.Tensor:
    """Mean over the real samples of the squared gradient norm of their summed logits w.r.t. the head inputs
    (`inputs` may hold more rows after the real ones, e.g. the fakes of the same pass)."""
    grads = torch.autograd.grad(real_logits.sum(), inputs, create_graph=True)
    rows = real_logits.shape[0]
    return sum(g[:rows].float().square().flatten(1).sum(1) for g in grads).mean()


def accuracy(real: torch.Tensor, fake: torch.Tensor) -> tuple[float, float]:
    """Fraction of (sample, head) logits on the right side of 0, for real and for fake."""
    return float((real > 0).float().mean()), float((fake < 0).float().mean())
