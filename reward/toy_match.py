"""The toy match reward: a small image-text cross-encoder giving the log-probability that an image shows its prompt.

A toy ImageReward (Xu et al. 2023, arXiv:2304.05977, trains a BLIP cross-encoder to score image-prompt pairs): the
prompt's words, encoded by a small transformer, make query vectors that attend over the image's 8x8 grid of CNN
features (which carry their coordinates); what the queries find (how strongly, how many cells, what and where) goes
through an MLP to the logit of "image and prompt match" (`ToyMatchNet`). Trained by `toyworld/train_reward.py` on
the toy scenes only, with hard negatives from both sides (`toyworld/mismatch.py`).

Score = log sigmoid(logit) = log P(match), in (-inf, 0]; ReNO's loss `0 - score` is the cross-entropy of "match".
Its gradient `(1 - P) * d logit` fades as an image comes to match, so noise ascent stops pushing a passing image.
Plain torch: the vocabulary and sizes come from the JSON config saved beside the weights.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .base import Reward, RewardModule

#: keys every toy match state dict has (what `reward.loading.detect_kind` looks for)
KEY_PREFIX = "match_query."
PAD, UNK = "<pad>", "<unk>"


def words(text: str) -> list[str]:
    return text.lower().replace(",", " ").replace(".", " ").split()


class Block(nn.Module):
    """Pre-norm transformer block (self-attention + MLP) with a key padding mask."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b, n, w = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])
        x = x + self.proj(attn.transpose(1, 2).reshape(b, n, w))
        return x + self.mlp(self.norm2(x))


class ToyMatchNet(nn.Module):
    """(normalised images [B, 3, 64, 64], token ids [B, L]) -> match logits [B].

    Text: word embeddings through `layers` transformer blocks. Image: a CNN to an 8x8 grid of features. Every
    word (in context) is a query that scores every cell; from those scores come what the prompt's checks need: the
    best cell's score (is the thing there), the summed sigmoid of the scores (how many), and the softmax-weighted
    feature and coordinates (what and where it is). An MLP on these, word by word, and the text's class token gives
    the logit.
    """

    def __init__(self, vocab: list[str], max_len: int = 16, width: int = 64, layers: int = 2, heads: int = 4,
                 channels: tuple[int, int] = (16, 32), image_size: int = 64, value: int = 16):
        super().__init__()
        self.vocab = list(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.max_len = int(max_len)
        c0, c1 = channels
        grid = image_size // 8
        # 64 -> 32 -> 16 -> 8; two coordinate channels let every feature know where it is
        self.match_image = nn.Sequential(
            nn.Conv2d(5, c0, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c0, c1, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c1, c1, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c1, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1))
        self.match_text = nn.Embedding(len(self.vocab), width)
        self.match_text_pos = nn.Parameter(torch.randn(self.max_len + 1, width) * 0.02)
        self.match_cls = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.match_fusion = nn.ModuleList(Block(width, heads) for _ in range(layers))  # the text encoder
        self.match_norm = nn.LayerNorm(width)
        self.match_query = nn.Linear(width, width)
        self.match_key = nn.Linear(width, width)
        self.match_value = nn.Linear(width, value)
        features = width + self.max_len * (value + 2 + 2)
        self.match_head = nn.Sequential(nn.Linear(features, 2 * width), nn.ReLU(), nn.Linear(2 * width, width),
                                        nn.ReLU(), nn.Linear(width, 1))
        # training only: per image cell, colour (none + 4), shape (none + 3) and "an object's centre is here"
        self.match_aux = nn.Linear(width, 5 + 4 + 1)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, image_size), torch.linspace(-1, 1, image_size), indexing="ij")
        self.register_buffer("coords", torch.stack([xs, ys])[None], persistent=False)
        cy, cx = torch.meshgrid(torch.linspace(-1, 1, grid), torch.linspace(-1, 1, grid), indexing="ij")
        self.register_buffer("cell_xy", torch.stack([cx.flatten(), cy.flatten()], -1), persistent=False)

    def config(self) -> dict:
        return {"architecture": "toymatch", "vocab": self.vocab, "max_len": self.max_len,
                "width": self.match_key.in_features, "layers": len(self.match_fusion),
                "heads": self.match_fusion[0].heads, "value": self.match_value.out_features,
                "channels": [self.match_image[0].out_channels, self.match_image[2].out_channels],
                "image_size": self.coords.shape[-1]}

    def tokenize(self, prompts: list[str], device=None) -> torch.Tensor:
        """Word ids [B, max_len] (unknown words -> <unk>, padded with <pad>, cut at max_len)."""
        unk, pad = self.index[UNK], self.index[PAD]
        rows = []
        for p in prompts:
            ids = [self.index.get(w, unk) for w in words(p)][:self.max_len]
            rows.append(ids + [pad] * (self.max_len - len(ids)))
        return torch.tensor(rows, dtype=torch.long, device=device)

    def image_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        x = torch.cat([pixels, self.coords.to(pixels.dtype).expand(pixels.shape[0], -1, -1, -1)], 1)
        return self.match_image(x).flatten(2).transpose(1, 2)  # [B, 64, width]

    def text_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """[B, 1 + L, W]: the class token, then each word in context."""
        b = ids.shape[0]
        x = torch.cat([self.match_cls.expand(b, -1, -1), self.match_text(ids)], 1) + self.match_text_pos[:ids.shape[1] + 1]
        keep = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=ids.device), ids != self.index[PAD]], 1)
        for block in self.match_fusion:
            x = block(x, keep)
        return self.match_norm(x)

    def forward(self, pixels: torch.Tensor, ids: torch.Tensor, image_tokens: torch.Tensor | None = None):
        img = self.image_tokens(pixels) if image_tokens is None else image_tokens  # [B, N, W]
        b, n, w = img.shape
        text = self.text_tokens(ids)
        q = self.match_query(text[:, 1:])  # [B, L, W]
        a = torch.einsum("blw,bnw->bln", q, self.match_key(img)) / math.sqrt(w)  # [B, L, N]
        p = a.softmax(-1)
        value = torch.einsum("bln,bnv->blv", p, self.match_value(img))
        where = torch.einsum("bln,nc->blc", p, self.cell_xy.to(img.dtype))
        how_many = torch.sigmoid(a).sum(-1, keepdim=True) / 4
        best = a.amax(-1, keepdim=True)
        per_word = torch.cat([value, where, how_many, best], -1) * (ids != self.index[PAD]).unsqueeze(-1)
        return self.match_head(torch.cat([text[:, 0], per_word.flatten(1)], -1)).squeeze(-1)


class ToyMatchReward(Reward):
    """log P(image matches prompt) from the toy cross-encoder (ReNO loss: 0 - score = -log P)."""

    kind = "toymatch"
    loss_offset = 0.0
    activation_factor = 40.0  # a tiny model: activations, not weights, are what a batch costs

    def __init__(self, net: ToyMatchNet, *, name: str = "toymatch", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)):
        super().__init__(RewardModule(net=net), name=name, image_size=net.coords.shape[-1], mean=mean, std=std,
                         checkpoint_targets=[])

    @property
    def net(self) -> ToyMatchNet:
        return self.module.net

    def _score(self, pixel_values, prompts):
        return F.logsigmoid(self.net(pixel_values, self.net.tokenize(prompts, pixel_values.device)).float())


def config_path(weights: Path) -> Path:
    return Path(weights).with_suffix(".json")


def build(config: dict) -> ToyMatchNet:
    if config.get("architecture") != "toymatch":
        raise ValueError(f"not a toy match config (architecture {config.get('architecture')!r}, want 'toymatch').")
    return ToyMatchNet(config["vocab"], max_len=config["max_len"], width=config["width"], layers=config["layers"],
                       heads=config["heads"], channels=tuple(config["channels"]), image_size=config["image_size"],
                       value=config["value"])


def from_state_dict(sd: dict[str, torch.Tensor], path: Path) -> ToyMatchReward:
    """The reward from its weights and the JSON config beside them (`<name>.json`)."""
    cfg_file = config_path(path)
    if not cfg_file.is_file():
        raise ValueError(f"{path.name} is a toy match reward but its config {cfg_file.name} is missing; keep the "
                         f"JSON file written by toyworld/train_reward.py beside the weights.")
    config = json.loads(cfg_file.read_text())
    with torch.inference_mode(False):
        net = build(config)
        net.load_state_dict(sd, strict=True)
    return ToyMatchReward(net, mean=config.get("mean", (0.5,) * 3), std=config.get("std", (0.25,) * 3))
