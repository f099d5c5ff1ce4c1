"""Input checks and the differentiable image preprocessing every reward shares.

The reference pipelines (open_clip's and BLIP's eval transforms, torchvision's `Resize(size, bicubic)` +
`CenterCrop(size)` + `Normalize`, and transformers' `CLIPImageProcessor`) resize the short side to the model's size
with antialiased bicubic filtering, crop the centre square and normalise per channel. This module does the same on
tensors so gradients reach the pixels; it reproduces torchvision's tensor path exactly (same output-size rounding and
crop offsets) and PIL-based processors up to PIL's quantisation to uint8.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: normalisation of every OpenAI/LAION CLIP, HPS, PickScore and BLIP (ImageReward) checkpoint
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: values this far outside [0, 1] are rejected (decoders clamp, but fp16 rounding may overshoot a little)
RANGE_SLACK = 1e-3


def check_images(images) -> torch.Tensor:
    """Validate a ComfyUI IMAGE batch ([B, H, W, 3], float, values in [0, 1]); return it unchanged."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor in ComfyUI IMAGE layout [B, H, W, 3]; got {type(images).__name__}.")
    shape = tuple(images.shape)
    if images.ndim == 3 and shape[-1] == 3:
        raise ValueError(f"images must be a batch [B, H, W, 3]; got one image of shape {shape}. Use images[None].")
    if images.ndim != 4 or shape[-1] != 3:
        hint = ""
        if images.ndim == 4 and shape[1] == 3:
            hint = " This looks channels-first [B, 3, H, W]; pass images.permute(0, 2, 3, 1)."
        elif images.ndim == 4 and shape[-1] == 4:
            hint = " Drop the alpha channel: images[..., :3]."
        raise ValueError(f"images must be in ComfyUI IMAGE layout [B, H, W, 3]; got shape {shape}.{hint}")
    if shape[0] == 0 or shape[1] == 0 or shape[2] == 0:
        raise ValueError(f"images must not be empty; got shape {shape}.")
    if not images.is_floating_point():
        raise ValueError(f"images must be float in [0, 1]; got dtype {images.dtype}. For 0-255 data use images / 255.")
    lo, hi = (float(v) for v in torch.aminmax(images.detach().float()))
    if not (lo >= -RANGE_SLACK and hi <= 1.0 + RANGE_SLACK):
        hint = " They look like [-1, 1] VAE output: use (images + 1) / 2." if lo >= -1.01 and hi <= 1.01 else ""
        if hi > 1.5 and lo >= 0:
            hint = " They look like 0-255 data: use images / 255."
        raise ValueError(f"image values must be in [0, 1]; got min {lo:.4g}, max {hi:.4g}.{hint}")
    return images


def resized_size(height: int, width: int, size: int) -> tuple[int, int]:
    """The (height, width) torchvision's `Resize(size)` gives: short side `size`, long side truncated."""
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


def resize_center_crop(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, size, size]: antialiased bicubic resize of the short side, then the centre crop."""
    height, width = pixels.shape[-2:]
    new_h, new_w = resized_size(height, width, size)
    if (new_h, new_w) != (height, width):
        pixels = F.interpolate(pixels, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True)
    top = int(round((new_h - size) / 2.0))
    left = int(round((new_w - size) / 2.0))
    return pixels[..., top:top + size, left:left + size]


def to_pixel_values(images: torch.Tensor, size: int, mean=CLIP_MEAN, std=CLIP_STD,
                    dtype: torch.dtype | None = None, device: torch.device | None = None) -> torch.Tensor:
    """ComfyUI IMAGE [B, H, W, 3] in [0, 1] -> normalised model input [B, 3, size, size], differentiable.

    The arithmetic runs in float32 (bicubic antialias has no half kernels on CPU) and the result is cast to `dtype`.
    """
    x = images.to(device=device, dtype=torch.float32).movedim(-1, 1)
    x = resize_center_crop(x, size)
    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    x = (x - mean_t) / std_t
    return x if dtype is None else x.to(dtype)
