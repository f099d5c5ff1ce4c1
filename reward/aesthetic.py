"""LAION aesthetic predictor v2: an MLP on the L2-normalised CLIP ViT-L/14 image embedding (ReNO loss: 10 - score)."""

from __future__ import annotations

from .base import Reward, RewardModule
from .blip import RewardHead
from .preprocess import CLIP_MEAN, CLIP_STD


class AestheticReward(Reward):
    """Prompt-independent: `MLP(normalize(clip_image_embedding))`, roughly a 1-10 rating."""

    kind = "aesthetic"
    loss_offset = 10.0
    activation_factor = 0.4

    def __init__(self, clip_model, head: RewardHead, *, name: str = "aesthetic", image_size: int | None = None,
                 mean=CLIP_MEAN, std=CLIP_STD):
        """`clip_model`: a transformers CLIPModel whose projection width matches the head (768 for ViT-L/14); only
        its vision tower and projection are kept."""
        proj = clip_model.visual_projection.out_features
        if proj != head.in_features:
            raise ValueError(f"the aesthetic MLP takes {head.in_features}-d CLIP embeddings but the backbone gives "
                             f"{proj}-d ones; use CLIP ViT-L/14 (openai/clip-vit-large-patch14) as the backbone.")
        module = RewardModule(vision=clip_model.vision_model, projection=clip_model.visual_projection, head=head)
        super().__init__(module, name=name, image_size=image_size or clip_model.config.vision_config.image_size,
                         mean=mean, std=std, checkpoint_targets=list(clip_model.vision_model.encoder.layers))

    def _score(self, pixel_values, prompts):
        features = self.module.projection(self.module.vision(pixel_values=pixel_values).pooler_output)
        features = features / features.norm(dim=-1, keepdim=True)
        return self.module.head(features).squeeze(-1)
