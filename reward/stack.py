"""A weighted sum of rewards: ReNO's objective `sum_i w_i * loss_i`, and the matching combined score."""

from __future__ import annotations

import torch

from .base import Reward, check_images, normalize_prompts

#: ReNO's default weights per reward kind (aesthetic is off in ReNO; 1.0 is ours, for when it is connected)
RENO_WEIGHTS = {"hps": 5.0, "imagereward": 1.0, "pickscore": 0.05, "clip": 0.01, "aesthetic": 1.0}


class RewardStack:
    """Rewards with weights. `loss` is ReNO's weighted loss per image; `score` the weighted score per image."""

    def __init__(self, entries: list[tuple[Reward, float]]):
        if not entries:
            raise ValueError("a reward stack needs at least one reward")
        self.entries: list[tuple[str, Reward, float]] = []
        seen: dict[str, int] = {}
        for reward, weight in entries:
            if not isinstance(reward, Reward):
                raise TypeError(f"expected a Reward, got {type(reward).__name__}")
            seen[reward.kind] = seen.get(reward.kind, 0) + 1
            label = reward.kind if seen[reward.kind] == 1 else f"{reward.kind}_{seen[reward.kind]}"
            self.entries.append((label, reward, float(weight)))
        if all(w == 0 for _, _, w in self.entries):
            raise ValueError("every reward weight is 0; give at least one reward a non-zero weight")

    @classmethod
    def with_reno_weights(cls, rewards: list[Reward]) -> RewardStack:
        return cls([(r, RENO_WEIGHTS.get(r.kind, 1.0)) for r in rewards])

    def __repr__(self) -> str:
        return "RewardStack(" + ", ".join(f"{label}={w:g}" for label, _, w in self.entries) + ")"

    @property
    def weights(self) -> dict[str, float]:
        return {label: w for label, _, w in self.entries}

    def scores(self, images: torch.Tensor, prompts) -> dict[str, torch.Tensor]:
        """Each reward's score per image (float32 [B]), keyed by kind (`clip_2` for a second CLIP)."""
        images = check_images(images)
        prompts = normalize_prompts(prompts, images.shape[0])
        return {label: reward.score(images, prompts) for label, reward, w in self.entries if w != 0}

    def score(self, images: torch.Tensor, prompts) -> torch.Tensor:
        """Weighted sum of the scores per image."""
        scores = self.scores(images, prompts)
        return sum(w * scores[label] for label, _, w in self.entries if w != 0)

    def loss(self, images: torch.Tensor, prompts) -> torch.Tensor:
        """ReNO's objective per image: sum of `weight * (offset - score)`."""
        return self.losses(images, prompts)[0]

    def losses(self, images: torch.Tensor, prompts) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(total weighted loss [B], each reward's unweighted loss [B])."""
        scores = self.scores(images, prompts)
        per = {label: reward.loss_offset - scores[label] for label, reward, w in self.entries if w != 0}
        total = sum(w * per[label] for label, _, w in self.entries if w != 0)
        return total, per
