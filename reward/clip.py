"""CLIP-family rewards on transformers' CLIPModel: CLIP score, PickScore and HPSv2.1 (converted, see openclip.py)."""

from __future__ import annotations

import importlib.util
from collections import OrderedDict
from pathlib import Path

import torch

from .base import Reward, RewardModule
from .preprocess import CLIP_MEAN, CLIP_STD

TOKENIZER_FILES = ("tokenizer.json", "vocab.json")


def comfy_tokenizer_dir() -> Path | None:
    """ComfyUI's bundled CLIP BPE tokenizer folder (`comfy/sd1_tokenizer`), found without importing comfy."""
    try:
        spec = importlib.util.find_spec("comfy")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "sd1_tokenizer"
        if (candidate / "vocab.json").is_file() and (candidate / "merges.txt").is_file():
            return candidate
    return None


def has_tokenizer(folder: Path) -> bool:
    return (folder / "tokenizer.json").is_file() or ((folder / "vocab.json").is_file()
                                                      and (folder / "merges.txt").is_file())


def load_clip_tokenizer(folder: str | Path | None = None):
    """A CLIPTokenizer from `folder` when it holds tokenizer files, else ComfyUI's bundled `comfy/sd1_tokenizer`
    (the same OpenAI CLIP BPE, vocab 49408, that every CLIP, PickScore and HPS checkpoint uses)."""
    from transformers import CLIPTokenizer

    searched = []
    for candidate in ([Path(folder)] if folder else []) + [comfy_tokenizer_dir()]:
        if candidate is None:
            continue
        searched.append(str(candidate))
        if has_tokenizer(candidate):
            return CLIPTokenizer.from_pretrained(str(candidate), local_files_only=True)
    raise FileNotFoundError(
        "No CLIP tokenizer found. Searched: " + (", ".join(searched) or "nothing") + ". Put tokenizer.json (or "
        "vocab.json + merges.txt) next to the model, e.g. from huggingface.co/openai/clip-vit-large-patch14, or run "
        "inside ComfyUI, whose bundled comfy/sd1_tokenizer is used as the fallback.")


def clip_image_settings(model, folder: Path | None = None) -> tuple[int, tuple, tuple]:
    """(size, mean, std) from preprocessor_config.json next to the model when present, else the CLIP defaults at
    the vision tower's native resolution."""
    size, mean, std = int(model.config.vision_config.image_size), CLIP_MEAN, CLIP_STD
    if folder is not None and (folder / "preprocessor_config.json").is_file():
        import json

        cfg = json.loads((folder / "preprocessor_config.json").read_text())
        mean = tuple(cfg.get("image_mean", mean))
        std = tuple(cfg.get("image_std", std))
        crop = cfg.get("crop_size", size)
        size = int(crop.get("height", size) if isinstance(crop, dict) else crop)
    return size, mean, std


class ClipReward(Reward):
    """CLIP score: `exp(logit_scale) * cos(image, text)` (ReNO loss: 100 - score)."""

    kind = "clip"
    loss_offset = 100.0
    use_logit_scale = True
    activation_factor = 0.4
    text_cache_size = 16

    def __init__(self, model, tokenizer, *, name: str | None = None, image_size: int | None = None,
                 mean=CLIP_MEAN, std=CLIP_STD, max_length: int | None = None):
        """`model`: a transformers CLIPModel (any size); `tokenizer`: a CLIP tokenizer (callable like
        transformers' CLIPTokenizer)."""
        module = RewardModule(clip=model)
        text_layers = list(model.text_model.encoder.layers)
        vision_layers = list(model.vision_model.encoder.layers)
        super().__init__(module, name=name or self.kind, image_size=image_size or model.config.vision_config.image_size,
                         mean=mean, std=std, checkpoint_targets=vision_layers + text_layers)
        self.tokenizer = tokenizer
        self.max_length = int(min(max_length or 77, model.config.text_config.max_position_embeddings))
        self._text_cache: OrderedDict = OrderedDict()

    @classmethod
    def from_model(cls, model, tokenizer=None, **kwargs) -> ClipReward:
        """Wrap an already-built transformers CLIPModel; `tokenizer` defaults to ComfyUI's bundled CLIP tokenizer."""
        return cls(model, tokenizer if tokenizer is not None else load_clip_tokenizer(), **kwargs)

    @property
    def clip(self):
        return self.module.clip

    def tokenize(self, prompts: list[str], device) -> dict[str, torch.Tensor]:
        tokens = self.tokenizer(prompts, padding="max_length", truncation=True, max_length=self.max_length,
                                return_tensors="pt")
        return {"input_ids": tokens["input_ids"].to(device), "attention_mask": tokens["attention_mask"].to(device)}

    def text_features(self, prompts: list[str]) -> torch.Tensor:
        """L2-normalised text embeddings [B, E]; cached per prompt list (the text side needs no gradient)."""
        key = (tuple(prompts), self.device, self.dtype)
        cached = self._text_cache.get(key)
        if cached is not None:
            self._text_cache.move_to_end(key)
            return cached
        with torch.no_grad():
            tokens = self.tokenize(prompts, self.device)
            pooled = self.clip.text_model(**tokens).pooler_output
            features = self.clip.text_projection(pooled)
            features = features / features.norm(dim=-1, keepdim=True)
        if features.is_inference():  # scored inside inference mode (Score Images): ReNO may reuse it under autograd
            with torch.inference_mode(False):
                features = features.clone()
        self._text_cache[key] = features
        while len(self._text_cache) > self.text_cache_size:
            self._text_cache.popitem(last=False)
        return features

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pooled = self.clip.vision_model(pixel_values=pixel_values).pooler_output
        features = self.clip.visual_projection(pooled)
        return features / features.norm(dim=-1, keepdim=True)

    def _score(self, pixel_values, prompts):
        cos = (self.image_features(pixel_values) * self.text_features(prompts)).sum(-1)
        return self.clip.logit_scale.exp() * cos if self.use_logit_scale else cos


class PickScoreReward(ClipReward):
    """PickScore v1: `exp(logit_scale) * cos` of a CLIP ViT-H-14 fine-tuned on Pick-a-Pic (ReNO loss: 30 - score)."""

    kind = "pickscore"
    loss_offset = 30.0


class HPSReward(ClipReward):
    """HPSv2.1: plain cosine of an open_clip ViT-H-14 fine-tuned on HPD v2 (ReNO loss: 1 - score)."""

    kind = "hps"
    loss_offset = 1.0
    use_logit_scale = False


CLIP_KINDS = {cls.kind: cls for cls in (ClipReward, PickScoreReward, HPSReward)}
