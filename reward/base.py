"""The reward interface: IMAGE batch + prompts -> one differentiable score per image, plus ReNO's loss form.

A `Reward` owns an `nn.Module` with the weights. Inside ComfyUI that module is wrapped in a
`comfy.model_patcher.ModelPatcher` and loaded with `comfy.model_management.load_models_gpu`, so reward models
offload like core models; in plain Python (tests, scripts) it simply lives on the device it was given.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..samplers.differentiable import materialize_
from .preprocess import CLIP_MEAN, CLIP_STD, check_images, to_pixel_values

log = logging.getLogger("quickstep")

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def normalize_prompts(prompts, batch: int) -> list[str]:
    """A prompt string, or one per image (a 1-element list is broadcast), as a list of `batch` strings."""
    if isinstance(prompts, str):
        return [prompts] * batch
    if not isinstance(prompts, Sequence) or not all(isinstance(p, str) for p in prompts):
        raise TypeError(f"prompts must be a string or a list of strings; got {type(prompts).__name__}.")
    prompts = list(prompts)
    if len(prompts) == 1:
        return prompts * batch
    if len(prompts) != batch:
        raise ValueError(f"got {len(prompts)} prompts for {batch} images; give one prompt, or one per image.")
    return prompts


def checkpoint_layers(layers: Iterable[nn.Module]) -> int:
    """Recompute each layer's activations in backward instead of storing them (works in eval mode, unlike
    transformers' own switch, which only acts in train mode). Returns how many layers were wrapped."""
    count = 0
    for layer in layers:
        if getattr(layer, "_quickstep_checkpointed", False):
            continue
        forward = layer.forward

        @functools.wraps(forward)
        def wrapped(*args, _forward=forward, **kwargs):
            if torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
                return checkpoint(_forward, *args, use_reentrant=False, **kwargs)
            return _forward(*args, **kwargs)

        layer.forward = wrapped
        layer._quickstep_checkpointed = True
        count += 1
    return count


class RewardModule(nn.Module):
    """Container for a reward's weights. A plain module (not a transformers PreTrainedModel) so ModelPatcher can set
    its `device` attribute."""

    def __init__(self, **parts: nn.Module):
        super().__init__()
        for name, part in parts.items():
            self.add_module(name, part)
        self.device = None

    def get_dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype


class Reward:
    """Base class: a differentiable image reward.

    `score(images, prompts)` -> float32 tensor [B], higher is better, differentiable w.r.t. `images`.
    `loss(images, prompts)` -> `loss_offset - score` per image: ReNO's loss form (lower is better; the offset only
    shifts it). Images are ComfyUI IMAGE tensors [B, H, W, 3] in [0, 1], any size and aspect ratio.
    """

    kind = "reward"
    #: ReNO's constant in `loss = offset - score`
    loss_offset = 0.0
    #: activation memory per image for forward + backward, bytes per parameter byte (a rough planning figure)
    activation_factor = 0.5

    def __init__(self, module: RewardModule, *, name: str, image_size: int, mean=CLIP_MEAN, std=CLIP_STD,
                 checkpoint_targets: Iterable[nn.Module] = ()):
        self.module = module.eval().requires_grad_(False)
        self.name = name
        self.image_size = int(image_size)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self._checkpoint_targets = list(checkpoint_targets)
        self.gradient_checkpointing = False
        self.patcher = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, name={self.name!r}, dtype={self.dtype}, device={self.device})"

    # -- placement ---------------------------------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return self.module.get_dtype()

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def to(self, device=None, dtype: torch.dtype | None = None) -> Reward:
        """Move/cast the weights (plain-Python use; under ComfyUI the memory manager places them)."""
        self.module.to(device=device, dtype=dtype)
        return self

    def enable_gradient_checkpointing(self) -> Reward:
        """Recompute the transformer layers' activations in backward: less memory, about a third more time."""
        checkpoint_layers(self._checkpoint_targets)
        self.gradient_checkpointing = True
        return self

    def manage(self, load_device=None, offload_device=None) -> Reward:
        """Hand the weights to ComfyUI's memory manager (a ModelPatcher loaded with `load_models_gpu` on use)."""
        import comfy.model_management as mm
        import comfy.model_patcher

        load_device = load_device or mm.get_torch_device()
        offload_device = offload_device or mm.unet_offload_device()
        self.module.to(offload_device)
        self.module.device = offload_device
        self.patcher = comfy.model_patcher.ModelPatcher(self.module, load_device=load_device,
                                                        offload_device=offload_device)
        return self

    def parameter_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.module.parameters())

    def prepare(self, batch: int = 1) -> torch.device:
        """Bring the weights to the compute device (through ComfyUI's memory manager when managed)."""
        if self.patcher is not None:
            import comfy.model_management as mm

            with torch.inference_mode(False):
                required = int(self.parameter_bytes() * self.activation_factor * max(batch, 1))
                mm.load_models_gpu([self.patcher], memory_required=required, force_full_load=True)
        if materialize_(self.module):
            log.debug("[quickstep] %s: re-materialised inference-mode weights for autograd", self.name)
        return self.device

    # -- scoring -----------------------------------------------------------------------------------------------
    def pixel_values(self, images: torch.Tensor, device=None) -> torch.Tensor:
        """Checked IMAGE batch -> the model's normalised [B, 3, S, S] input, in the model's dtype."""
        return to_pixel_values(check_images(images), self.image_size, self.mean, self.std, dtype=self.dtype,
                               device=device or self.device)

    def score(self, images: torch.Tensor, prompts) -> torch.Tensor:
        """One score per image (float32 [B], higher is better), differentiable w.r.t. `images`."""
        images = check_images(images)
        prompts = normalize_prompts(prompts, images.shape[0])
        device = self.prepare(images.shape[0])
        pixels = self.pixel_values(images, device)
        scores = self._score(pixels, prompts)
        return scores.float().to(images.device)

    def loss(self, images: torch.Tensor, prompts) -> torch.Tensor:
        """ReNO's per-image loss `loss_offset - score` (lower is better)."""
        return self.loss_offset - self.score(images, prompts)

    def _score(self, pixel_values: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        raise NotImplementedError
