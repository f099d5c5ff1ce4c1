"""ImageReward v1.0: a from-scratch BLIP (ViT image encoder + BERT text encoder with image cross-attention) + MLP.

Module and parameter names follow the official `ImageReward.pt` state dict exactly (`blip.visual_encoder.*`,
`blip.text_encoder.*`, `mlp.layers.*`), so the file loads without any renaming and without the `image-reward`
package (which pins an old timm). Its score is the MLP of the text encoder's [CLS] output, standardised with the
constants of the official release; ReNO's loss is `2 - score`. Tests compare it with transformers' BLIP classes.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .base import Reward, RewardModule

SCORE_MEAN = 0.16717362830052426
SCORE_STD = 1.0333394966054072
MAX_TEXT_TOKENS = 35


def _attention(q, k, v, heads: int, mask=None):
    b, n, d = q.shape
    split = lambda t: t.view(b, t.shape[1], heads, d // heads).transpose(1, 2)  # noqa: E731
    out = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=mask)
    return out.transpose(1, 2).reshape(b, n, d)


class _Mlp(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, hidden), nn.Linear(hidden, width)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class _ViTAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return self.proj(_attention(q, k, v, self.heads))


class _ViTBlock(nn.Module):
    def __init__(self, width: int, heads: int, hidden: int, eps: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width, eps=eps), nn.LayerNorm(width, eps=eps)
        self.attn, self.mlp = _ViTAttention(width, heads), _Mlp(width, hidden)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _PatchEmbed(nn.Module):
    def __init__(self, width: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(3, width, kernel_size=patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """BLIP's ViT (pre-norm blocks, [CLS] token, learned positions, final LayerNorm eps 1e-6)."""

    def __init__(self, image_size: int, patch: int, width: int, depth: int, heads: int, hidden: int):
        super().__init__()
        tokens = (image_size // patch) ** 2 + 1
        self.patch_embed = _PatchEmbed(width, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, width))
        self.blocks = nn.ModuleList(_ViTBlock(width, heads, hidden, 1e-6) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=1e-6)

    def forward(self, pixels):
        x = self.patch_embed(pixels)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class _BertSelfAttention(nn.Module):
    def __init__(self, width: int, kv_width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(width, width)
        self.key, self.value = nn.Linear(kv_width, width), nn.Linear(kv_width, width)

    def forward(self, x, context, mask=None):
        return _attention(self.query(x), self.key(context), self.value(context), self.heads, mask)


class _BertOutput(nn.Module):
    def __init__(self, width_in: int, width: int, eps: float):
        super().__init__()
        self.dense, self.LayerNorm = nn.Linear(width_in, width), nn.LayerNorm(width, eps=eps)

    def forward(self, x, residual):
        return self.LayerNorm(self.dense(x) + residual)


class _BertAttention(nn.Module):
    def __init__(self, width: int, kv_width: int, heads: int, eps: float):
        super().__init__()
        self.self = _BertSelfAttention(width, kv_width, heads)
        self.output = _BertOutput(width, width, eps)

    def forward(self, x, context, mask=None):
        return self.output(self.self(x, context, mask), x)


class _Dense(nn.Module):
    def __init__(self, width_in: int, width_out: int):
        super().__init__()
        self.dense = nn.Linear(width_in, width_out)

    def forward(self, x):
        return F.gelu(self.dense(x))


class _BertLayer(nn.Module):
    def __init__(self, width: int, image_width: int, heads: int, hidden: int, eps: float):
        super().__init__()
        self.attention = _BertAttention(width, width, heads, eps)
        self.crossattention = _BertAttention(width, image_width, heads, eps)
        self.intermediate = _Dense(width, hidden)
        self.output = _BertOutput(hidden, width, eps)

    def forward(self, x, text_mask, image):
        x = self.attention(x, x, text_mask)
        x = self.crossattention(x, image)
        return self.output(self.intermediate(x), x)


class _BertEmbeddings(nn.Module):
    def __init__(self, vocab: int, width: int, positions: int, eps: float):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, width)
        self.position_embeddings = nn.Embedding(positions, width)
        self.LayerNorm = nn.LayerNorm(width, eps=eps)

    def forward(self, input_ids):
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        return self.LayerNorm(self.word_embeddings(input_ids) + self.position_embeddings(positions)[None])


class _BertEncoder(nn.Module):
    def __init__(self, layers: int, *args):
        super().__init__()
        self.layer = nn.ModuleList(_BertLayer(*args) for _ in range(layers))


class TextEncoder(nn.Module):
    """BLIP's BERT with a cross-attention block after every self-attention block (no pooler)."""

    def __init__(self, vocab: int, width: int, positions: int, layers: int, heads: int, hidden: int,
                 image_width: int, eps: float):
        super().__init__()
        self.embeddings = _BertEmbeddings(vocab, width, positions, eps)
        self.encoder = _BertEncoder(layers, width, image_width, heads, hidden, eps)

    def forward(self, input_ids, attention_mask, image_embeds):
        x = self.embeddings(input_ids)
        mask = attention_mask[:, None, None, :].bool()  # keys that are real tokens
        for layer in self.encoder.layer:
            x = layer(x, mask, image_embeds)
        return x


class _Blip(nn.Module):
    def __init__(self, visual_encoder: VisionTransformer, text_encoder: TextEncoder):
        super().__init__()
        self.visual_encoder, self.text_encoder = visual_encoder, text_encoder


class RewardHead(nn.Module):
    """The ImageReward / LAION-aesthetic MLP: Linear layers at the state dict's `layers.<i>` indices (the dropouts in
    between hold no weights and are identities at inference)."""

    def __init__(self, shapes: dict[int, tuple[int, int]]):
        super().__init__()
        last = max(shapes)
        self.layers = nn.Sequential(*(nn.Linear(shapes[i][1], shapes[i][0]) if i in shapes else nn.Identity()
                                      for i in range(last + 1)))

    @classmethod
    def from_state_dict(cls, sd: dict, prefix: str = "layers.") -> RewardHead:
        pattern = re.compile(re.escape(prefix) + r"(\d+)\.weight$")
        shapes = {int(m.group(1)): tuple(v.shape) for k, v in sd.items() if (m := pattern.match(k))}
        if not shapes or shapes[max(shapes)][0] != 1:
            raise ValueError(f"no MLP ending in one output found under '{prefix}*'")
        return cls(shapes)

    @property
    def in_features(self) -> int:
        return next(m for m in self.layers if isinstance(m, nn.Linear)).in_features

    def forward(self, x):
        return self.layers(x)


def blip_config(sd: dict, med_config: dict | None = None) -> dict:
    """Architecture sizes read off an ImageReward state dict (heads and eps from med_config.json when given)."""
    med = med_config or {}
    v_width, _, patch, _ = sd["blip.visual_encoder.patch_embed.proj.weight"].shape
    grid = math.isqrt(sd["blip.visual_encoder.pos_embed"].shape[1] - 1)
    vocab, t_width = sd["blip.text_encoder.embeddings.word_embeddings.weight"].shape
    count = lambda p: 1 + max(int(m.group(1)) for k in sd if (m := re.match(re.escape(p) + r"(\d+)\.", k)))  # noqa: E731
    return dict(
        image_size=grid * patch, patch=patch, vision_width=v_width, vision_depth=count("blip.visual_encoder.blocks."),
        vision_heads=int(med.get("vision_heads", max(v_width // 64, 1))),
        vision_hidden=sd["blip.visual_encoder.blocks.0.mlp.fc1.weight"].shape[0],
        vocab=vocab, text_width=t_width, positions=sd["blip.text_encoder.embeddings.position_embeddings.weight"].shape[0],
        text_depth=count("blip.text_encoder.encoder.layer."), text_heads=int(med.get("num_attention_heads", 12)),
        text_hidden=sd["blip.text_encoder.encoder.layer.0.intermediate.dense.weight"].shape[0],
        eps=float(med.get("layer_norm_eps", 1e-12)))


def build_imagereward(sd: dict, med_config: dict | None = None) -> RewardModule:
    cfg = blip_config(sd, med_config)
    vision = VisionTransformer(cfg["image_size"], cfg["patch"], cfg["vision_width"], cfg["vision_depth"],
                               cfg["vision_heads"], cfg["vision_hidden"])
    text = TextEncoder(cfg["vocab"], cfg["text_width"], cfg["positions"], cfg["text_depth"], cfg["text_heads"],
                       cfg["text_hidden"], cfg["vision_width"], cfg["eps"])
    module = RewardModule(blip=_Blip(vision, text), mlp=RewardHead.from_state_dict(sd, "mlp.layers."))
    module.image_size = cfg["image_size"]
    return module


def read_med_config(weights: Path) -> dict | None:
    path = weights.parent / "med_config.json"
    return json.loads(path.read_text()) if path.is_file() else None


def load_bert_tokenizer(folder: Path):
    """BERT uncased WordPiece tokenizer from `folder` (or its `bert-base-uncased/` subfolder): vocab.txt, or the fast
    tokenizer's tokenizer.json alone (the slow BertTokenizer cannot read that)."""
    from transformers import BertTokenizer, BertTokenizerFast

    for candidate in (folder, folder / "bert-base-uncased"):
        if (candidate / "vocab.txt").is_file():
            return BertTokenizer.from_pretrained(str(candidate), local_files_only=True)
        if (candidate / "tokenizer.json").is_file():
            return BertTokenizerFast.from_pretrained(str(candidate), local_files_only=True)
    raise FileNotFoundError(
        f"ImageReward needs the bert-base-uncased tokenizer: put vocab.txt (from "
        f"https://huggingface.co/google-bert/bert-base-uncased) in {folder} or {folder / 'bert-base-uncased'}.")


class ImageRewardReward(Reward):
    """ImageReward v1.0: standardised MLP([CLS] of BLIP's image-grounded text encoder) (ReNO loss: 2 - score)."""

    kind = "imagereward"
    loss_offset = 2.0
    activation_factor = 0.6

    def __init__(self, module: RewardModule, tokenizer, *, name: str = "imagereward"):
        blip = module.blip
        super().__init__(module, name=name, image_size=module.image_size,
                         checkpoint_targets=list(blip.visual_encoder.blocks) + list(blip.text_encoder.encoder.layer))
        self.tokenizer = tokenizer

    def _score(self, pixel_values, prompts):
        tokens = self.tokenizer(prompts, padding="max_length", truncation=True, max_length=MAX_TEXT_TOKENS,
                                return_tensors="pt")
        blip = self.module.blip
        image = blip.visual_encoder(pixel_values)
        text = blip.text_encoder(tokens["input_ids"].to(image.device), tokens["attention_mask"].to(image.device), image)
        raw = self.module.mlp.float()(text[:, 0].float()).squeeze(-1)  # fp32 head, as the official score()
        return (raw - SCORE_MEAN) / SCORE_STD
