"""The toy match reward: a small image-text model giving the log-probability that an image shows its prompt.

A toy ImageReward (Xu et al. 2023, arXiv:2304.05977, trains a cross-encoder to score image-prompt pairs), built the
way the prompt is (a neural module network, Andreas et al. 2016, arXiv:1511.02799): the prompt's words are grouped
into object phrases (an optional number and colour, then a shape noun) and an optional relation word between the
first two phrases. A CNN gives a 16x16 grid of cell features that know their coordinates and an object-centre
density (each object's density sums to about one). Each phrase makes a query from its words' embeddings that
scores every cell; the phrase's density is the centre density times that match, so

* its **count** is the summed density (a blank field counts 0, an extra copy adds 1),
* its **place** is the density-weighted mean of the cell coordinates,

and each phrase's check is a logit of its count against its number ("a": at least one; "two": exactly two), the
relation's a logit of the learned direction of the relation word dotted with subject place minus object place (so
"A left of B", "B left of A" and "A right of B" differ in sign, whatever the shapes). log P(match) is the sum of
the checks' log-probabilities: every phrase and the relation must hold. Trained by `toyworld/train_reward.py` on the
toy scenes only, with hard negatives from both sides (`toyworld/mismatch.py`).

Score = log P(match), in (-inf, 0]; ReNO's loss `0 - score` is the cross-entropy of "match". Its gradient fades as
an image comes to match, so noise ascent stops pushing a passing image. `ToyMatchNet.forward` returns the logit
log P - log(1 - P), so `logsigmoid(logit)` is log P. Plain torch: vocabulary, word classes and sizes come from the
JSON config saved beside the weights.
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
MAX_PHRASES = 3
LOG_P_MAX = -1e-12  # the logit stays finite (<= 27.6)


def words(text: str) -> list[str]:
    return text.lower().replace(",", " ").replace(".", " ").split()


def parse(tokens: list[str], nouns, plurals: dict, modifiers, numbers: dict, relations):
    """Object phrases [(noun, modifier or None, number: 0 = "at least one")] in prompt order, and the relation word
    between the first two phrases (None if there is none). Words of no class are ignored."""
    phrases, mods, number, relation, rel_at = [], [], 0, None, None
    for w in tokens:
        if w in numbers:
            number = numbers[w]
        elif w in modifiers:
            mods.append(w)
        elif w in relations and len(phrases) == 1 and relation is None:
            relation, rel_at = w, len(phrases)
        elif w in nouns or w in plurals:
            phrases.append((plurals.get(w, w), mods[-1] if mods else None, number))
            mods, number = [], 0
    if relation is not None and (len(phrases) < 2 or rel_at != 1):
        relation = None
    return phrases[:MAX_PHRASES], relation


class ToyMatchNet(nn.Module):
    """(normalised images [B, 3, 64, 64], token ids [B, L]) -> match logits [B] (see the module docstring)."""

    def __init__(self, vocab: list[str], *, nouns, plurals: dict, modifiers, numbers: dict, relations,
                 max_len: int = 16, width: int = 64, channels: tuple[int, int] = (16, 32), image_size: int = 64):
        super().__init__()
        self.vocab = list(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.classes = dict(nouns=list(nouns), plurals=dict(plurals), modifiers=list(modifiers),
                            numbers={k: int(v) for k, v in numbers.items()}, relations=list(relations))
        for w in [*nouns, *plurals, *modifiers, *numbers, *relations]:
            if w not in self.index:
                raise ValueError(f"toy match config: word class member {w!r} is not in the vocabulary.")
        self.max_len = int(max_len)
        c0, c1 = channels
        self.grid = image_size // 4
        # 64 -> 32 -> 16 (stride 4: 16x16 cells of 4 px); two coordinate channels let every feature know where it is;
        # receptive field ~37 px, more than the largest object
        self.match_image = nn.Sequential(
            nn.Conv2d(5, c0, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c0, c1, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c1, c1, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c1, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=2, dilation=2), nn.ReLU(),
            nn.Conv2d(width, width, 1))
        self.match_centre = nn.Linear(width, 1)  # object-centre density per cell
        self.match_key = nn.Linear(width, width)
        self.match_word = nn.Embedding(len(self.vocab), width)  # noun + modifier ("<pad>": no colour named)
        self.match_query = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width + 1))
        self.match_relation = nn.Embedding(len(self.vocab), 2)  # a relation word's direction in the image plane
        self.match_aux = nn.Linear(width, 5 + 4)  # training only: per cell, colour (none + 4) and shape (none + 3)
        # count checks: log-scale and threshold of "at least one" (count - t) and "exactly n" (t - (count - n)^2),
        # and the relation's bias
        self.match_check = nn.Parameter(torch.tensor([math.log(6.0), 0.5, math.log(6.0), 0.25, 0.0]))
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, image_size), torch.linspace(-1, 1, image_size), indexing="ij")
        with torch.no_grad():  # start near no objects (a few in all 256 cells), not near one per cell
            self.match_centre.weight.mul_(0.1)
            self.match_centre.bias.fill_(-4.0)
        self.register_buffer("coords", torch.stack([xs, ys])[None], persistent=False)
        centres = (torch.arange(self.grid) + 0.5) / self.grid * 2 - 1
        cy, cx = torch.meshgrid(centres, centres, indexing="ij")
        self.register_buffer("cell_xy", torch.stack([cx.flatten(), cy.flatten()], -1), persistent=False)

    RELATION_GAIN = 8.0  # relation directions are learned at 1/8 scale, so Adam moves them fast enough

    def config(self) -> dict:
        return {"architecture": "toymatch", "version": 2, "vocab": self.vocab, **self.classes,
                "max_len": self.max_len, "width": self.match_key.in_features,
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

    def phrases(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """The parsed prompts as tensors: per phrase slot [B, P] noun id, modifier id (<pad> if none), number
        (0 = at least one), present, "any object" (a prompt without a known noun); per prompt [B] relation id and
        whether there is one."""
        pad = self.index[PAD]
        b = ids.shape[0]
        out = {k: torch.zeros(b, MAX_PHRASES, dtype=torch.long) for k in ("noun", "modifier", "number")}
        out["modifier"].fill_(pad)
        out["noun"].fill_(pad)
        present = torch.zeros(b, MAX_PHRASES, dtype=torch.bool)
        anything = torch.zeros(b, MAX_PHRASES, dtype=torch.bool)
        relation = torch.full((b,), pad, dtype=torch.long)
        for r, row in enumerate(ids.tolist()):
            tokens = [self.vocab[i] for i in row if i != pad]
            found, rel = parse(tokens, **self.classes)
            if not found:  # nothing the model knows is named: "is there any object at all"
                present[r, 0] = anything[r, 0] = True
            for j, (noun, mod, number) in enumerate(found):
                out["noun"][r, j] = self.index[noun]
                out["modifier"][r, j] = self.index[mod] if mod else pad
                out["number"][r, j] = number
                present[r, j] = True
            if rel is not None:
                relation[r] = self.index[rel]
        out.update(present=present, anything=anything, relation=relation, has_relation=relation != pad)
        return {k: v.to(ids.device) for k, v in out.items()}

    def image_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        x = torch.cat([pixels, self.coords.to(pixels.dtype).expand(pixels.shape[0], -1, -1, -1)], 1)
        return self.match_image(x).flatten(2).transpose(1, 2)  # [B, 256, width]

    def centre_density(self, img: torch.Tensor) -> torch.Tensor:
        return F.softplus(self.match_centre(img).squeeze(-1))  # [B, N]

    def agree(self, img: torch.Tensor, noun: torch.Tensor, modifier: torch.Tensor) -> torch.Tensor:
        """[B, P, N] logits that the object centred in each cell is what each phrase (noun, modifier [B, P]) names."""
        w = img.shape[-1]
        q = self.match_query(self.match_word(noun) + self.match_word(modifier))  # [B, P, W + 1]
        return torch.einsum("bpw,bnw->bpn", q[..., :w], self.match_key(img)) / math.sqrt(w) + q[..., w:]

    def forward(self, pixels: torch.Tensor, ids: torch.Tensor, image_tokens: torch.Tensor | None = None,
                details: bool = False):
        img = self.image_tokens(pixels) if image_tokens is None else image_tokens  # [B, N, W]
        ph = self.phrases(ids)
        delta = self.centre_density(img)  # [B, N]
        a = self.agree(img, ph["noun"], ph["modifier"])
        agree = torch.where(ph["anything"][..., None], torch.ones_like(a), torch.sigmoid(a))
        density = delta[:, None] * agree  # [B, P, N]
        count = density.sum(-1)  # [B, P]
        place = torch.einsum("bpn,nc->bpc", density, self.cell_xy.to(img.dtype)) / (count[..., None] + 1e-3)
        k_one, t_one, k_n, t_n, rel_bias = self.match_check
        n = ph["number"].to(count.dtype)
        check = torch.where(ph["number"] > 0, k_n.exp() * (t_n - (count - n) ** 2), k_one.exp() * (count - t_one))
        log_p = (F.logsigmoid(check) * ph["present"]).sum(-1)
        direction = self.match_relation(ph["relation"]) * self.RELATION_GAIN  # [B, 2]
        rel = (direction * (place[:, 0] - place[:, 1])).sum(-1) + rel_bias
        log_p = log_p + F.logsigmoid(rel) * ph["has_relation"]
        log_p = log_p.clamp(max=LOG_P_MAX)
        logit = log_p - torch.log(-torch.expm1(log_p))  # log P - log(1 - P)
        if details:
            return logit, {"delta": delta, "agree": a, "density": density, "count": count, "place": place,
                           "phrases": ph}
        return logit


class ToyMatchReward(Reward):
    """log P(image matches prompt) from the toy match model (ReNO loss: 0 - score = -log P)."""

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
    if config.get("version") != 2:
        raise ValueError(f"toy match config version {config.get('version')!r} is not supported (want 2); retrain with "
                         f"toyworld/train_reward.py or restore the shipped toy_match.json.")
    return ToyMatchNet(config["vocab"], nouns=config["nouns"], plurals=config["plurals"],
                       modifiers=config["modifiers"], numbers=config["numbers"], relations=config["relations"],
                       max_len=config["max_len"], width=config["width"], channels=tuple(config["channels"]),
                       image_size=config["image_size"])


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
