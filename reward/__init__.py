"""Differentiable reward models (CLIP score, PickScore, HPSv2.1, ImageReward, aesthetic) behind one interface.

Every reward takes ComfyUI IMAGE tensors ([B, H, W, 3] float in [0, 1], any size) and prompts and returns one score
per image, differentiable w.r.t. the images (`Reward.score`), plus ReNO's loss form (`Reward.loss`). Plain-Python use:

    from quickstep.reward import load_reward, ClipReward
    reward = load_reward("/path/to/clip_folder", kind="clip", device="cpu", dtype="fp32")
    reward.score(images, ["a prompt"])            # float32 [B]
    reward = ClipReward.from_model(clip_model, tokenizer)  # an already-built transformers CLIPModel

Only torch is imported here; transformers and safetensors load inside the functions that need them.
"""

from .aesthetic import AestheticReward
from .base import DTYPES, Reward, RewardModule
from .blip import ImageRewardReward
from .clip import CLIP_KINDS, ClipReward, HPSReward, PickScoreReward, comfy_tokenizer_dir, load_clip_tokenizer
from .loading import (
    EXPECTED,
    EXTENSIONS,
    FOLDER,
    KINDS,
    build_clip_model,
    detect_kind,
    list_reward_files,
    load_reward,
    read_state_dict,
    register_folder,
)
from .preprocess import CLIP_MEAN, CLIP_STD, check_images, to_pixel_values
from .stack import RENO_WEIGHTS, RewardStack

__all__ = [
    "AestheticReward", "CLIP_KINDS", "CLIP_MEAN", "CLIP_STD", "ClipReward", "DTYPES", "EXPECTED", "EXTENSIONS",
    "FOLDER", "HPSReward", "ImageRewardReward", "KINDS", "PickScoreReward", "RENO_WEIGHTS", "Reward", "RewardModule",
    "RewardStack", "build_clip_model", "check_images", "comfy_tokenizer_dir", "detect_kind", "list_reward_files",
    "load_clip_tokenizer", "load_reward", "read_state_dict", "register_folder", "to_pixel_values",
]
