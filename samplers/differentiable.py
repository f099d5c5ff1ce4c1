"""Differentiable calls of a ComfyUI MODEL and VAE, the base ReNO (noise optimisation) and LADD (training) stand on.

ComfyUI runs every prompt under `torch.inference_mode()`, so weights a loader node created and the conditioning
CLIPTextEncode produced are inference tensors, which autograd refuses to save for backward ("Inference tensors
cannot be saved for backward"; entering `inference_mode(False)` alone does not help). The recipe here:

* `grad_ready(patcher)` returns a clone of a MODEL's or VAE's ModelPatcher with an identity weight wrapper on every
  parameter of ComfyUI's castable layers: ComfyUI then recomputes each weight at forward time (as core's LoRA trainer
  does), so the tensors autograd saves are normal ones and the shared model is left untouched. Parameters and
  buffers outside castable layers (a few embeddings and scales) are re-created once as normal tensors in place.
* `clone_conditioning` and `as_normal` copy CONDITIONING and tensors from other nodes into normal tensors.
* `run_guided` runs a function inside core's own guider (condition processing, model loading, CFG, model patches
  and wrappers all as in sampling) and gives it `denoise(x, sigma) -> x0`, differentiable in x.
* `decode` is VAE decoding without the in-place output buffers of `VAE.decode`, differentiable in the latent.

All of it must run inside `autograd_enabled()`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

import torch


@contextmanager
def autograd_enabled():
    """Leave ComfyUI's inference mode and enable gradients for the block.

    Also raises ComfyUI's `in_training` flag (v0.33+), as core's LoRA trainer does: with it, model code takes its
    differentiable paths (e.g. Flux's rotary embedding instead of comfy-kitchen's kernel, which has no backward).
    And every activation autograd saves is saved as a copy: ComfyUI's Flux blocks update the residual stream in
    place (`x += ...`) after layer norm saved it, which autograd would otherwise reject at backward.
    """
    import comfy.model_management as mm

    had_flag = hasattr(mm, "in_training")
    previous = getattr(mm, "in_training", False)
    if had_flag:
        mm.in_training = True
    try:
        with torch.inference_mode(False), torch.enable_grad(), \
                torch.autograd.graph.saved_tensors_hooks(_save_copy, _identity):
            yield
    finally:
        if had_flag:
            mm.in_training = previous


def _identity(tensor):
    return tensor


def _save_copy(tensor):
    # activations (they have a grad_fn) may be modified in place later in the forward pass; weights and inputs not
    return tensor.clone() if tensor.grad_fn is not None else tensor


def materialize_(module: torch.nn.Module, skip: set[str] = frozenset()) -> int:
    """Re-create inference-mode parameters and buffers (outside `skip`) as normal tensors, in place, so autograd
    may save them. Returns how many were replaced."""
    replaced = 0
    with torch.inference_mode(False):  # a clone made inside inference mode would be an inference tensor again
        for name, param in list(module.named_parameters()):
            if name not in skip and param.is_inference():
                owner, attr = _owner(module, name)
                owner._parameters[attr] = torch.nn.Parameter(param.clone(), requires_grad=False)
                replaced += 1
        for name, buf in list(module.named_buffers()):
            if buf is not None and buf.is_inference():
                owner, attr = _owner(module, name)
                owner._buffers[attr] = buf.clone()
                replaced += 1
    return replaced


def _owner(module: torch.nn.Module, name: str):
    path, _, attr = name.rpartition(".")
    return (module.get_submodule(path) if path else module), attr


def grad_ready(patcher, root: str = ""):
    """A clone of `patcher` (a MODEL or `vae.patcher`) whose forward can be differentiated in ComfyUI.

    `root` limits the wrappers to a submodule (e.g. "diffusion_model"). The weights stay frozen
    (requires_grad False); gradients flow to the inputs.
    """
    mp = patcher.clone()
    model = mp.model
    model.requires_grad_(False)
    wrapped = set()
    for module_name, module in model.named_modules():
        if not hasattr(module, "comfy_cast_weights"):  # not one of ComfyUI's castable ops
            continue
        if root and not (module_name == root or module_name.startswith(root + ".")):
            continue
        for param_name, _ in module.named_parameters(recurse=False):
            if param_name not in ("weight", "bias"):  # casting recomputes only these two
                continue
            key = f"{module_name}.{param_name}" if module_name else param_name
            mp.add_weight_wrapper(key, _identity)
            wrapped.add(key)
    target = model.get_submodule(root) if root else model
    prefix = f"{root}." if root else ""
    materialize_(target, {k[len(prefix):] for k in wrapped if k.startswith(prefix)})
    return mp


def as_normal(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor`, copied if it is an inference tensor (sigmas, latents and masks made by other nodes are)."""
    return tensor.clone() if tensor.is_inference() else tensor


def clone_conditioning(conditioning: list) -> list:
    """CONDITIONING with every tensor copied into a normal (non-inference) tensor."""
    def copy(value):
        if isinstance(value, torch.Tensor):
            return value.clone()
        if isinstance(value, dict):
            return {k: copy(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(copy(v) for v in value)
        return value

    return [[copy(c[0]), copy(c[1])] for c in conditioning]


def run_guided(model, positive: list, negative: list | None, cfg: float, latent: torch.Tensor,
               body: Callable, seed: int = 0):
    """Run `body(denoise, model_sampling)` inside core's sampling context and return what it returns.

    `denoise(x, sigma)` is the guided x0 prediction (CFG when cfg != 1 and negative is given) for a model-space
    latent x, differentiable in x. `latent` (VAE space, like LATENT["samples"]) fixes the shape and device set-up.
    """
    import comfy.samplers

    class BodySampler(comfy.samplers.Sampler):
        def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
                   disable_pbar=False):
            def denoise(x, sigma):
                sigma = as_normal(torch.as_tensor(sigma, device=x.device, dtype=x.dtype))
                return model_wrap(x, sigma.expand(x.shape[0]) if sigma.ndim == 0 else sigma, **extra_args)

            self.result = body(denoise, model_wrap.inner_model.model_sampling)
            return noise  # what the guider post-processes is discarded; the result is body's

    guider = comfy.samplers.CFGGuider(model)
    positive = clone_conditioning(positive)
    negative = clone_conditioning(negative) if negative is not None else None
    if negative is None:
        guider.inner_set_conds({"positive": positive})
    else:
        guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    sampler = BodySampler()
    zeros = torch.zeros_like(latent)
    guider.sample(zeros, zeros, sampler, torch.ones(2), seed=seed, disable_pbar=True)
    return sampler.result


def decode(vae, latent: torch.Tensor, patcher=None) -> torch.Tensor:
    """Decode a VAE-space latent into an IMAGE [B, H, W, C] in [0, 1], differentiable in `latent`.

    `patcher` is `grad_ready(vae.patcher)`; it is loaded through ComfyUI's memory manager.
    """
    import comfy.model_management

    patcher = patcher or grad_ready(vae.patcher)
    comfy.model_management.load_models_gpu([patcher])
    pixels = vae.first_stage_model.decode(latent.to(vae.device, vae.vae_dtype))
    pixels = vae.process_output(pixels.to(torch.float32).clone())  # process_output works in place
    return pixels.movedim(1, -1)


@contextmanager
def checkpointed(layers):
    """Gradient checkpointing of `layers` for the block: their activations are recomputed in backward instead of
    stored. Each forward is restored on exit, so a shared model (a MODEL or reward other nodes use) is left as it
    was. Tensor inputs are copied first: ComfyUI's Flux blocks update their input in place, and a recomputation
    from a modified input would give a silently wrong gradient."""
    from torch.utils.checkpoint import checkpoint

    patched = []
    for layer in layers:
        if "forward" in layer.__dict__:  # already wrapped (by us or by the reward loader's option)
            continue
        forward = layer.forward

        def wrapped(*args, _forward=forward, **kwargs):
            if not torch.is_grad_enabled() or torch.is_inference_mode_enabled():
                return _forward(*args, **kwargs)
            args = tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)
            kwargs = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
            return checkpoint(_forward, *args, use_reentrant=False, **kwargs)

        layer.forward = wrapped
        patched.append(layer)
    try:
        yield len(patched)
    finally:
        for layer in patched:
            del layer.forward
