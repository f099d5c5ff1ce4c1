"""open_clip ViT state dicts (the official `HPS_v2.1_compressed.pt`) -> transformers CLIPModel.

Why our own key mapping rather than open_clip: ComfyUI already ships transformers, while open_clip is not a ComfyUI
dependency and pulls timm (which the image-reward stack pins to an incompatible version). With one CLIPModel code path
HPS, PickScore and CLIP share the preprocessing, the dtype handling, gradient checkpointing and the memory manager.
The mapping is exact: tests/hosted/test_reward_models.py builds a random open_clip model, saves it in HPS's format,
loads it here and compares scores with open_clip's to 1e-5.

Head counts and the activation are not stored in a state dict. They come from an `open_clip_config.json`
(open_clip's own `{"model_cfg": {...}}` file) next to the weights when present, else from the shapes: vision heads =
width / 64 except ViT-H's 1280-wide tower (16 heads of 80), text heads = width / 64, GELU (open_clip's ViT-H-14 and
every LAION model; QuickGELU only for the OpenAI-trained weights, set `"quick_gelu": true` in the config file).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch

CONFIG_FILE = "open_clip_config.json"
_VISION_HEADS = {1280: 16, 1408: 16, 1664: 16}  # ViT-H, ViT-g, ViT-bigG use wider heads


def is_openclip_state_dict(sd: dict) -> bool:
    return "visual.conv1.weight" in sd and "token_embedding.weight" in sd and "visual.proj" in sd


def _layers(sd: dict, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return 1 + max(int(m.group(1)) for k in sd if (m := pattern.match(k)))


def read_model_cfg(weights: Path) -> dict:
    """open_clip's model config from `open_clip_config.json` beside the weights ({} when absent)."""
    path = weights.parent / CONFIG_FILE
    if not path.is_file():
        return {}
    cfg = json.loads(path.read_text())
    return cfg.get("model_cfg", cfg)


def openclip_config(sd: dict, model_cfg: dict | None = None):
    """The transformers CLIPConfig equivalent to an open_clip ViT state dict."""
    from transformers import CLIPConfig

    model_cfg = model_cfg or {}
    vcfg, tcfg = model_cfg.get("vision_cfg", {}), model_cfg.get("text_cfg", {})
    act = "quick_gelu" if model_cfg.get("quick_gelu", False) else "gelu"
    v_width, _, patch, _ = sd["visual.conv1.weight"].shape
    grid = math.isqrt(sd["visual.positional_embedding"].shape[0] - 1)
    v_heads = v_width // vcfg["head_width"] if "head_width" in vcfg else _VISION_HEADS.get(v_width, max(v_width // 64, 1))
    vocab, t_width = sd["token_embedding.weight"].shape
    t_heads = tcfg.get("heads", max(t_width // 64, 1))
    embed_dim = sd["visual.proj"].shape[1]
    vision = dict(hidden_size=v_width, intermediate_size=sd["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
                  num_hidden_layers=_layers(sd, "visual.transformer.resblocks."), num_attention_heads=v_heads,
                  image_size=grid * patch, patch_size=patch, hidden_act=act, layer_norm_eps=1e-5,
                  projection_dim=embed_dim)
    text = dict(vocab_size=vocab, hidden_size=t_width, intermediate_size=sd["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
                num_hidden_layers=_layers(sd, "transformer.resblocks."), num_attention_heads=t_heads,
                max_position_embeddings=sd["positional_embedding"].shape[0], hidden_act=act, layer_norm_eps=1e-5,
                projection_dim=embed_dim, bos_token_id=vocab - 2, eos_token_id=vocab - 1, pad_token_id=0)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=embed_dim)


def _block(sd: dict, src: str, dst: str, out: dict) -> None:
    q, k, v = sd[f"{src}.attn.in_proj_weight"].chunk(3)
    qb, kb, vb = sd[f"{src}.attn.in_proj_bias"].chunk(3)
    for name, w, b in (("q_proj", q, qb), ("k_proj", k, kb), ("v_proj", v, vb)):
        out[f"{dst}.self_attn.{name}.weight"], out[f"{dst}.self_attn.{name}.bias"] = w, b
    pairs = (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"),
             ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2"))
    for a, b_ in pairs:
        for p in ("weight", "bias"):
            out[f"{dst}.{b_}.{p}"] = sd[f"{src}.{a}.{p}"]


def openclip_to_transformers(sd: dict) -> dict[str, torch.Tensor]:
    """Rename (and split/transpose where the layouts differ) an open_clip ViT state dict to CLIPModel keys."""
    out = {
        "vision_model.embeddings.class_embedding": sd["visual.class_embedding"],
        "vision_model.embeddings.position_embedding.weight": sd["visual.positional_embedding"],
        "vision_model.embeddings.patch_embedding.weight": sd["visual.conv1.weight"],
        "visual_projection.weight": sd["visual.proj"].t().contiguous(),
        "text_model.embeddings.token_embedding.weight": sd["token_embedding.weight"],
        "text_model.embeddings.position_embedding.weight": sd["positional_embedding"],
        "text_projection.weight": sd["text_projection"].t().contiguous(),
        "logit_scale": sd["logit_scale"].reshape(()),
    }
    for a, b in (("visual.ln_pre", "vision_model.pre_layrnorm"), ("visual.ln_post", "vision_model.post_layernorm"),
                 ("ln_final", "text_model.final_layer_norm")):
        out[f"{b}.weight"], out[f"{b}.bias"] = sd[f"{a}.weight"], sd[f"{a}.bias"]
    for i in range(_layers(sd, "visual.transformer.resblocks.")):
        _block(sd, f"visual.transformer.resblocks.{i}", f"vision_model.encoder.layers.{i}", out)
    for i in range(_layers(sd, "transformer.resblocks.")):
        _block(sd, f"transformer.resblocks.{i}", f"text_model.encoder.layers.{i}", out)
    return out
