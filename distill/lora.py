"""The student: the frozen base weights plus a LoRA (Hu et al. 2021, Eq. 3: W' = W + (alpha / r) * B A), attached to a
ComfyUI MODEL as weight wrappers, the way core's LoRA trainer attaches its adapters (`ModelPatcher.add_weight_wrapper`:
ComfyUI recomputes each wrapped weight at forward time, so the base weights are shared, never copied or changed).

B ("up") starts at zero, so the student starts equal to the teacher (LADD, Sauer et al. 2024, Sec. 3: the student is
initialised from the teacher). A `Switch` shared by all wrappers bypasses the LoRA: with it off the same base weights
are the teacher and the discriminator's feature network, so one copy of the base weights serves all three roles
(the trick of diffusers' LCM-LoRA `disable_adapters()`).

Keys are ComfyUI's module paths; `to_comfy_lora` writes `diffusion_model.<module>.lora_up.weight` /
`.lora_down.weight` / `.alpha`, the generic format core's LoraLoader and LoraLoaderModelOnly read.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch

PREFIX = "diffusion_model."


class Switch:
    """On: wrappers add the LoRA (student). Off: they return the base weight (teacher, discriminator features)."""

    def __init__(self):
        self.enabled = True

    @contextmanager
    def set(self, enabled: bool):
        previous, self.enabled = self.enabled, enabled
        try:
            yield
        finally:
            self.enabled = previous


class LoRAWrapper:
    """Weight wrapper W -> W + scale * (up @ down).reshape(W.shape), skipped while the switch is off."""

    def __init__(self, up: torch.Tensor, down: torch.Tensor, scale: float, switch: Switch | None):
        self.up, self.down, self.scale, self.switch = up, down, scale, switch

    def __call__(self, weight: torch.Tensor) -> torch.Tensor:
        if self.switch is not None and not self.switch.enabled:
            return weight
        up = self.up.to(weight.device)
        down = self.down.to(weight.device)
        delta = (up @ down).reshape(weight.shape) * self.scale
        return weight + delta.to(weight.dtype)

    def move_to(self, device=None):  # called by ModelPatcher when it moves weight functions; params stay put
        return 0


def target_modules(patcher) -> dict[str, tuple[int, ...]]:
    """{module key: weight shape} of every castable layer with a >= 2-D weight under diffusion_model."""
    out = {}
    for name, module in patcher.model.named_modules():
        if not name.startswith(PREFIX) or not hasattr(module, "comfy_cast_weights"):
            continue
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.ndim >= 2:
            out[name] = tuple(weight.shape)
    return out


def init_params(shapes: dict[str, tuple[int, ...]], rank: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Fresh LoRA parameters (fp32, CPU): down ~ Kaiming-uniform as in core and PEFT, up = 0."""
    params = {}
    for key, shape in shapes.items():
        fan_in = math.prod(shape[1:])
        r = min(rank, shape[0], fan_in)
        bound = 1.0 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)) bound
        params[f"{key}.down"] = (torch.rand(r, fan_in, generator=generator) * 2 - 1) * bound
        params[f"{key}.up"] = torch.zeros(shape[0], r)
    return params


def module_keys(params: dict[str, torch.Tensor]) -> list[str]:
    return sorted({k.rsplit(".", 1)[0] for k in params})


def attach(patcher, params: dict[str, torch.Tensor], alpha: float, switch: Switch | None):
    """A clone of `patcher` with the LoRA `params` (tensors used as they are: pass trainable leaves to train them)."""
    mp = patcher.clone()
    for key in module_keys(params):
        up, down = params[f"{key}.up"], params[f"{key}.down"]
        mp.add_weight_wrapper(f"{key}.weight", LoRAWrapper(up, down, alpha / up.shape[1], switch))
    return mp


def to_comfy_lora(params: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """The state dict core's LoRA loaders read (keys relative to the model, i.e. starting with diffusion_model.)."""
    out = {}
    for key in module_keys(params):
        up, down = params[f"{key}.up"], params[f"{key}.down"]
        out[f"{key}.lora_up.weight"] = up.detach().float().cpu().contiguous()
        out[f"{key}.lora_down.weight"] = down.detach().float().cpu().contiguous()
        out[f"{key}.alpha"] = torch.tensor(float(alpha))
    return out


def from_comfy_lora(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], float]:
    """Inverse of `to_comfy_lora` (one alpha for all layers)."""
    params, alphas = {}, set()
    for k, v in sd.items():
        if k.endswith(".lora_up.weight"):
            params[k[:-len(".lora_up.weight")] + ".up"] = v.float()
        elif k.endswith(".lora_down.weight"):
            params[k[:-len(".lora_down.weight")] + ".down"] = v.float()
        elif k.endswith(".alpha"):
            alphas.add(float(v))
    if len(alphas) > 1:
        raise ValueError(f"LoRA has several alphas {sorted(alphas)}; this loader expects one.")
    return params, (alphas.pop() if alphas else 1.0)
