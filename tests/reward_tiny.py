"""Tiny random reward models written in the real release formats (for tests and the benchmark; no ComfyUI).

- CLIP / PickScore: a transformers folder (config.json + model.safetensors [+ tokenizer files]) via save_pretrained.
- HPSv2.1: an open_clip ViT state dict saved as {"state_dict": ...} in a .pt, like HPS_v2.1_compressed.pt.
- ImageReward: ImageReward.pt (plain state dict, official key names) + med_config.json + vocab.txt; the weights come
  from transformers' BLIP classes, renamed to the official layout, so the reference forward is independent of ours.
- Aesthetic: the LAION MLP (Linear/Dropout indices 0..7) as a .pth next to a tiny CLIP folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

TINY_PROJ = 16


def bytes_to_unicode() -> list[str]:
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, n = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + n))
            n += 1
    return chars


def write_clip_tokenizer(folder: Path) -> int:
    """A character-level CLIP BPE tokenizer (no merges); returns its vocab size (514)."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = bytes_to_unicode()
    vocab = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
         "pad_token": "<|endoftext|>"}))
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "CLIPTokenizer",
                                                              "model_max_length": 77}))
    return len(vocab)


def clip_config(vocab: int = 514, image_size: int = 32, patch: int = 8, width: int = 32, proj: int = TINY_PROJ,
                act: str = "quick_gelu"):
    from transformers import CLIPConfig

    text = dict(vocab_size=vocab, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=77, hidden_act=act, bos_token_id=vocab - 2,
                eos_token_id=vocab - 1, pad_token_id=vocab - 1)
    vision = dict(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2, num_attention_heads=2,
                  image_size=image_size, patch_size=patch, hidden_act=act)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=proj)


def tiny_clip(seed: int = 0, **kwargs):
    from transformers import CLIPModel

    torch.manual_seed(seed)
    return CLIPModel(clip_config(**kwargs)).eval()


def write_hf_clip(folder: Path, seed: int = 0, tokenizer: bool = True, **kwargs):
    """A transformers CLIP folder; returns the model that was saved."""
    model = tiny_clip(seed, **kwargs)
    model.save_pretrained(str(folder), safe_serialization=True)
    if tokenizer:
        write_clip_tokenizer(folder)
    return model


def tiny_openclip(seed: int = 0, vocab: int = 514):
    import open_clip

    torch.manual_seed(seed)
    cfg = {"embed_dim": TINY_PROJ,
           "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
           "text_cfg": {"context_length": 77, "vocab_size": vocab, "width": 32, "heads": 2, "layers": 2}}
    model = open_clip.model.CLIP(embed_dim=cfg["embed_dim"], vision_cfg=cfg["vision_cfg"], text_cfg=cfg["text_cfg"])
    with torch.no_grad():  # open_clip zero-initialises some projections; make every weight informative
        for p in model.parameters():
            if p.ndim >= 1 and float(p.abs().sum()) == 0:
                p.normal_(0, 0.02)
    return model.eval(), cfg


def write_hps(path: Path, seed: int = 0, vocab: int = 514, config: bool = True):
    """An HPS_v2.1_compressed.pt-style file ({"state_dict": open_clip ViT weights}); returns the open_clip model."""
    model, cfg = tiny_openclip(seed, vocab)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict()}, path)
    if config:
        (path.parent / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg}))
    return model


# -- ImageReward -----------------------------------------------------------------------------------------------
BERT_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "blue", "cat", "dog", "photo", "of", "the",
              "circle", "square", "left", "right", "in", "on", "and", ".", ","] + list("bcdefghijklmnopqrstuvwxyz")


def blip_reference(seed: int = 0, vocab: int = len(BERT_WORDS) + 2):
    """Random transformers BLIP vision + text towers and a reward MLP (the reference forward)."""
    from transformers import BlipTextConfig, BlipTextModel, BlipVisionConfig, BlipVisionModel

    torch.manual_seed(seed)
    vcfg = BlipVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=1,
                            image_size=32, patch_size=16, layer_norm_eps=1e-6, hidden_act="gelu")
    tcfg = BlipTextConfig(vocab_size=vocab, hidden_size=32, encoder_hidden_size=64, intermediate_size=64,
                          num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=40,
                          layer_norm_eps=1e-12, hidden_act="gelu")
    vision, text = BlipVisionModel(vcfg).eval(), BlipTextModel(tcfg, add_pooling_layer=False).eval()
    mlp = nn.Sequential(nn.Linear(32, 48), nn.Dropout(0.2), nn.Linear(48, 24), nn.Dropout(0.2), nn.Linear(24, 12),
                        nn.Dropout(0.1), nn.Linear(12, 6), nn.Linear(6, 1)).eval()
    for m in (vision, text):
        with torch.no_grad():
            for p in m.parameters():  # transformers initialises some vectors to 0/1; randomise everything
                p.add_(torch.randn_like(p) * 0.02)
    return vision, text, mlp


def imagereward_state_dict(vision, text, mlp) -> dict[str, torch.Tensor]:
    """transformers BLIP names -> the official ImageReward.pt names."""
    sd = {}
    v = vision.state_dict()
    sd["blip.visual_encoder.cls_token"] = v["embeddings.class_embedding"]
    sd["blip.visual_encoder.pos_embed"] = v["embeddings.position_embedding"]
    sd["blip.visual_encoder.patch_embed.proj.weight"] = v["embeddings.patch_embedding.weight"]
    sd["blip.visual_encoder.patch_embed.proj.bias"] = v["embeddings.patch_embedding.bias"]
    for k, t in v.items():
        if k.startswith("encoder.layers."):
            i, rest = k[len("encoder.layers."):].split(".", 1)
            rest = (rest.replace("self_attn.projection", "attn.proj").replace("self_attn.qkv", "attn.qkv")
                    .replace("layer_norm1", "norm1").replace("layer_norm2", "norm2"))
            sd[f"blip.visual_encoder.blocks.{i}.{rest}"] = t
        elif k.startswith("post_layernorm."):
            sd["blip.visual_encoder.norm." + k.split(".", 1)[1]] = t
    for k, t in text.state_dict().items():
        if not k.endswith("position_ids"):
            sd["blip.text_encoder." + k] = t
    sd["blip.text_encoder.embeddings.position_ids"] = torch.arange(40)[None]  # as in the official file
    sd["blip.vision_proj.weight"] = torch.zeros(8, 64)  # unused BLIP heads the official file also carries
    for k, t in mlp.state_dict().items():
        sd["mlp.layers." + k] = t
    return sd


def write_imagereward(folder: Path, seed: int = 0):
    """ImageReward/ImageReward.pt + med_config.json + vocab.txt; returns (vision, text, mlp) reference modules."""
    folder.mkdir(parents=True, exist_ok=True)
    vision, text, mlp = blip_reference(seed)
    torch.save(imagereward_state_dict(vision, text, mlp), folder / "ImageReward.pt")
    (folder / "med_config.json").write_text(json.dumps({
        "architectures": ["BertModel"], "hidden_size": 32, "num_attention_heads": 2, "num_hidden_layers": 2,
        "intermediate_size": 64, "layer_norm_eps": 1e-12, "hidden_act": "gelu", "vocab_size": len(BERT_WORDS) + 2,
        "encoder_width": 64, "add_cross_attention": True, "model_type": "bert"}))
    (folder / "vocab.txt").write_text("\n".join(BERT_WORDS) + "\n")
    return vision, text, mlp


# -- aesthetic -------------------------------------------------------------------------------------------------
def aesthetic_mlp(seed: int = 0, in_features: int = TINY_PROJ):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(in_features, 64), nn.Dropout(0.2), nn.Linear(64, 32), nn.Dropout(0.2),
                         nn.Linear(32, 16), nn.Dropout(0.1), nn.Linear(16, 8), nn.Linear(8, 1)).eval()


def write_aesthetic(folder: Path, seed: int = 0, backbone_name: str = "clip-vit-large-patch14"):
    """sac+logos+ava1-l14-linearMSE.pth + a CLIP folder beside it; returns (mlp, clip)."""
    folder.mkdir(parents=True, exist_ok=True)
    mlp = aesthetic_mlp(seed)
    # the LAION file is the state dict of an MLP module whose Sequential is called `layers`
    torch.save({f"layers.{k}": v for k, v in mlp.state_dict().items()}, folder / "sac+logos+ava1-l14-linearMSE.pth")
    clip = write_hf_clip(folder / backbone_name, seed + 1)
    return mlp, clip


#: the vocabulary of ComfyUI's bundled CLIP tokenizer (used when a model folder has no tokenizer files)
COMFY_VOCAB = 49408


def write_all(root: Path) -> dict[str, Path]:
    """One of each kind under `root` (a models/rewards folder); returns the file to pick per kind. The HPS file has no
    tokenizer beside it (like the real release), so inside ComfyUI it uses the bundled comfy/sd1_tokenizer."""
    write_hf_clip(root / "clip-tiny", 1)
    write_hf_clip(root / "PickScore_tiny", 2)
    write_hps(root / "hps" / "HPS_v2.1_compressed.pt", 3, vocab=COMFY_VOCAB)
    write_imagereward(root / "ImageReward", 4)
    write_aesthetic(root / "aesthetic", 5)
    return {"clip": root / "clip-tiny" / "model.safetensors", "pickscore": root / "PickScore_tiny" / "model.safetensors",
            "hps": root / "hps" / "HPS_v2.1_compressed.pt", "imagereward": root / "ImageReward" / "ImageReward.pt",
            "aesthetic": root / "aesthetic" / "sac+logos+ava1-l14-linearMSE.pth"}
