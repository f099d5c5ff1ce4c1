"""Tiny models of every family, built with ComfyUI's own classes (no downloads), for tests and benchmarks.

Configs follow `comfy.supported_models`; weights are initialised deterministically because ComfyUI's ops skip
`reset_parameters()` (uninitialised tensors are garbage; MMDiT's pos_embed buffer gave NaNs). The model_sampling
buffers are left alone: they are the schedule under test.
"""

from __future__ import annotations

import logging

import comfy.model_base
import comfy.model_management
import comfy.model_patcher
import comfy.sd
import comfy.sd1_clip
import comfy.sdxl_clip
import comfy.supported_models
import comfy.supported_models_base
import torch

FAMILIES = ("sd1", "sd2v", "sdxl", "sd3", "flux")

_UNET = {"image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 32, "num_res_blocks": [1, 1],
         "channel_mult": [1, 2], "transformer_depth": [0, 1], "transformer_depth_output": [0, 0, 1, 1],
         "transformer_depth_middle": 1, "use_spatial_transformer": True, "legacy": False, "context_dim": 32,
         "use_linear_in_transformer": True, "adm_in_channels": None, "use_temporal_attention": False,
         "use_temporal_resblock": False}
_CLIP_L = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 3,
           "projection_dim": 32}


def _flux_config() -> dict:
    import inspect

    import comfy.ldm.flux.model as flux_model
    cfg = {"image_model": "flux", "in_channels": 16, "out_channels": 16, "vec_in_dim": 32, "context_in_dim": 32,
           "hidden_size": 64, "mlp_ratio": 2.0, "num_heads": 2, "depth": 1, "depth_single_blocks": 1,
           "axes_dim": [8, 12, 12], "theta": 10000, "patch_size": 2, "qkv_bias": True, "guidance_embed": True}
    if "txt_ids_dims" in inspect.signature(flux_model.FluxParams).parameters:  # required from v0.33 on
        cfg["txt_ids_dims"] = []
    return cfg


def model_config(family: str, **unet_overrides):
    """The `supported_models` config object of a tiny model of `family` (UNet families take config overrides)."""
    if family == "sd1":
        cfg = comfy.supported_models.SD15(dict(_UNET, **unet_overrides))
    elif family == "sd2v":
        cfg = comfy.supported_models.SD20(dict(_UNET, **unet_overrides))
        cfg.model_type = lambda state_dict, prefix="": comfy.model_base.ModelType.V_PREDICTION
    elif family == "sdxl":
        cfg = comfy.supported_models.SDXL(dict(_UNET, context_dim=64, adm_in_channels=32 + 6 * 256,
                                               num_classes="sequential"))
    elif family == "sd3":
        cfg = comfy.supported_models.SD3({
            "in_channels": 16, "out_channels": 16, "patch_size": 2, "depth": 2, "num_blocks": 1,
            "adm_in_channels": 32, "pos_embed_max_size": 32, "num_patches": 1024, "pos_embed_scaling_factor": None,
            "input_size": None,
            "context_embedder_config": {"target": "torch.nn.Linear", "params": {"in_features": 32, "out_features": 128}}})
    elif family == "flux":
        cfg = comfy.supported_models.Flux(_flux_config())
    else:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    cfg.set_inference_dtype(torch.float32, None)
    return cfg


def init_weights_(module: torch.nn.Module, seed: int) -> None:
    """Deterministic init: N(0, 0.02) matrices, unit norm scales, zero biases, N(0, 0.02) float buffers."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.fill_(1.0)
        for _, b in module.named_buffers():
            if b.is_floating_point():
                b.copy_(torch.randn(b.shape, generator=gen) * 0.02)


def build_model(family: str, seed: int = 0, disable_dynamic: bool = False,
                **unet_overrides) -> comfy.model_patcher.ModelPatcher:
    """A ModelPatcher around a tiny diffusion model of `family`, the same for the same seed."""
    model = model_config(family, **unet_overrides).get_model({})
    init_weights_(model.diffusion_model, seed)
    mp = comfy.model_patcher.ModelPatcher(model, comfy.model_management.get_torch_device(),
                                          comfy.model_management.unet_offload_device())
    if hasattr(mp, "cached_patcher_init"):  # v0.15+: lets clone(force_deepcopy=True) rebuild the weights
        mp.cached_patcher_init = (lambda *a, disable_dynamic=False: build_model(*a, **unet_overrides),
                                  (family, seed))
    return mp


def build_clip(family: str, seed: int = 1) -> comfy.sd.CLIP:
    """A tiny text encoder matching `family`'s conditioning (SDXL: CLIP-L + CLIP-G, others: one CLIP-L)."""
    if family == "sdxl":
        target = comfy.supported_models_base.ClipTarget(comfy.sdxl_clip.SDXLTokenizer, comfy.sdxl_clip.SDXLClipModel)
        options = {"clip_l_model_config": _CLIP_L, "clip_g_model_config": _CLIP_L}
    else:
        target = comfy.supported_models_base.ClipTarget(comfy.sd1_clip.SD1Tokenizer, comfy.sd1_clip.SD1ClipModel)
        options = {"clip_l_model_config": _CLIP_L}
    clip = comfy.sd.CLIP(target=target, model_options=options)
    init_weights_(clip.cond_stage_model, seed)
    return clip


def build_vae(latent_channels: int, seed: int = 2) -> comfy.sd.VAE:
    """A tiny KL autoencoder (8x down) with 4 or 16 latent channels."""
    ddconfig = {"double_z": True, "z_channels": latent_channels, "resolution": 256, "in_channels": 3, "out_ch": 3,
                "ch": 32, "ch_mult": [1, 1, 1, 1], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}
    logger = logging.getLogger()
    level, _ = logger.level, logger.setLevel(logging.ERROR)  # ComfyUI warns about every key of the empty state dict
    try:
        vae = comfy.sd.VAE(sd={}, config={"params": {"embed_dim": latent_channels, "ddconfig": ddconfig}})
    finally:
        logger.setLevel(level)
    init_weights_(vae.first_stage_model, seed)
    vae.latent_channels = latent_channels
    return vae


def build_family(family: str, seed: int = 0, channels: int = 32):
    """(MODEL, CLIP, VAE) of a tiny `family` model; `channels` widens the SD1-style UNets."""
    unet = {"model_channels": channels} if family in ("sd1", "sd2v") and channels != 32 else {}
    return (build_model(family, seed, **unet), build_clip(family, seed + 1),
            build_vae(16 if family in ("sd3", "flux") else 4, seed + 2))
