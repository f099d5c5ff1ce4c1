"""Train the toy match reward (`reward/toy_match.py`) on toy scenes: `python -m toyworld.train_reward` (~37 min, 1 thread).

Every step draws `--batch` scenes of *training* prompts (`toyworld/scenes.py`; held-out prompts are never drawn, nor
used as a negative caption) and makes, for each, one matching pair and one hard negative (`toyworld/mismatch.py`):
half from the prompt side (wrong colour/shape/count, swapped colours, flipped relation, objects swapped, or now and
then any other training prompt) and half from the image side (blank, drop, extra copy, recolour, swap colours,
mirror, reshape, fade); the kinds that need position or counting (flipped relation, objects swapped, wrong count,
mirror, extra copy) are drawn more often (`PROMPT_WEIGHTS`, `IMAGE_WEIGHTS`). Labels come from the scenes' object
lists, never from the evaluator. Matching pairs are varied in ways a match does not depend on: a distractor object
the prompt does not mention, the other word order ("A left of B" = "B right of A"), and every image (either side)
may go through the toy VAE (sometimes with noise on the latent), pixel noise and blur.

Loss: binary cross-entropy of "match" on every pair, a ranking term softplus(negative - positive) between each
scene's pair, and dense targets from the object lists (`--aux`): each cell's colour and shape, the centre density (a
unit Gaussian blob per visible object on the 16x16 grid) and, per object phrase of each caption, the density of the
objects that phrase names, their count and (at object centres) which objects it names. Validation (logged every `--eval-every` steps, what a run is judged by) uses unseen scenes of
*training* prompts. The run is a fixed number of steps (`--steps`; `--minutes` is only a safety cap) and its data
stream is seeded, so a rerun repeats the shipped run step for step; bit for bit it does not across processes on
this CPU (two 30-step runs in separate processes differ by ~2e-5 in the weights, float rounding in the kernels;
within one process the same seed gives equal weights), so a rerun reproduces the recipe and its figures. The
state (weights, AdamW moments, data stream) is saved atomically to `--state` every `--save-every` steps and a rerun
with the same `--state` resumes exactly; the weights go to toyworld/weights/toy_match.safetensors (+ .json config,
both hash-recorded) and the curve to toyworld/logs/train_reward.jsonl.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import _train, mismatch, scenes

WEIGHTS_NAME = "toy_match.safetensors"
RELATION_WORDS = ("left", "right", "above", "below")
VOCAB = ["<pad>", "<unk>", "a", "photo", "of", "and", "two", "three", *RELATION_WORDS,
         *scenes.SHAPES, *[s + "s" for s in scenes.SHAPES], *scenes.COLORS]
#: word classes the model parses prompts by (what each word means is learned)
WORD_CLASSES = dict(nouns=list(scenes.SHAPES), plurals={s + "s": s for s in scenes.SHAPES},
                    modifiers=list(scenes.COLORS), numbers={w: n for n, w in scenes.NUMBERS.items()},
                    relations=list(RELATION_WORDS))
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
PROMPT_WEIGHTS = {"flipped_relation": 2.0, "swapped_objects": 2.0, "wrong_count": 2.0}
IMAGE_WEIGHTS = {"extra_copy": 3.0, "mirror": 3.0, "drop": 1.5}
BLOB_SIGMA = 4.0  # pixels: the centre density's Gaussian, one cell of the 16x16 grid
DEFAULTS = dict(threads=1, seed=0, minutes=60.0, steps=3500, batch=32, lr=2e-3, warmup=150, vae=0.4, pool=40,
                rank=1.0, aux=1.0, eval_every=250, save_every=250, state="/tmp/quickstep_toy_match_state")


def new_net():
    from quickstep.reward.toy_match import ToyMatchNet

    with torch.inference_mode(False):
        return ToyMatchNet(VOCAB, **WORD_CLASSES)


def main(argv=None):
    args, curve = _train.setup("train_reward", argv, **DEFAULTS)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import harness

    harness.register_pack()
    from . import models

    vae = models.load_vae()
    torch.manual_seed(args.seed)
    net = new_net().train()
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.01)
    budget = _train.Budget(args.minutes)
    pool_rng = np.random.default_rng([args.seed, 1])  # its own stream: a resumed run rebuilds the same pool
    pool = vae_pool(Sampler(pool_rng), vae, pool_rng, args.pool, args.batch)
    curve.log(event="vae pool", batches=len(pool))
    rng = np.random.default_rng(args.seed)
    step = resume(args.state, net, opt, rng)
    if step:
        curve.log(event="resumed", step=step)
    data = Sampler(rng)
    val = validation_set()
    while step < args.steps:
        if budget.over:  # a safety stop only: the shipped file comes from a run of all its steps
            curve.log(event="time cap reached before the last step; the weights are not the reproducible ones",
                      step=step)
            break
        for g in opt.param_groups:
            g["lr"] = _train.cosine_lr(step, args.steps, args.lr, args.warmup)
        if rng.random() < args.vae:
            batch = pool[int(rng.integers(len(pool)))]
        else:
            batch = data.batch(args.batch)
        pixels = augment(batch[0], rng)
        loss, parts = losses(net, pixels, *batch[1:], args.rank, args.aux)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 50 == 0:
            curve.log(step=step, loss=round(loss.item(), 4), **parts, lr=opt.param_groups[0]["lr"])
        if step % args.eval_every == 0:
            curve.log(step=step, **validation_preferences(net, val))
        if step % args.save_every == 0:
            save_state(args.state, net, opt, rng, step)
    curve.log(event="done", step=step)
    net.eval()
    curve.log(event="final", step=step, **validation_preferences(net, val))
    save(net, args.out)


# ------------------------------------------------------------------- data

def _weighted(rng, kinds, weights):
    w = np.array([weights.get(k, 1.0) for k in kinds])
    return kinds[int(rng.choice(len(kinds), p=w / w.sum()))]


def visible_objects(d: mismatch.Drawn) -> list[tuple[str, str, float, float]]:
    return [(s, c, x, y) for s, c, x, y, _ in mismatch.visible(d)]


class Sampler:
    """Batches of images with their visible objects, and captions (text and structured prompt) with labels, with
    each scene's matching and mismatching pair."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.train = scenes.train_prompts()
        self.train_set = set(self.train)
        self.py_rng = _PyRandom(rng)

    def _prompt_negative(self, d: mismatch.Drawn):
        p = d.prompt
        if self.rng.random() < 0.15:
            q = self.train[int(self.rng.integers(len(self.train)))]
            return None if q == p else q
        kinds = [k for k in mismatch.PROMPT_EDITS if mismatch.prompt_edits(p, k)]
        kind = _weighted(self.rng, kinds, PROMPT_WEIGHTS)
        options = [q for q in mismatch.prompt_edits(p, kind) if q in self.train_set]
        return options[int(self.rng.integers(len(options)))] if options else None

    def _image_negative(self, d: mismatch.Drawn):
        kinds = [k for k in mismatch.IMAGE_EDITS if d.prompt.category in mismatch.EDIT_APPLIES.get(k, scenes.CATEGORIES)]
        return mismatch.image_edit(d, _weighted(self.rng, kinds, IMAGE_WEIGHTS), self.rng)

    def batch(self, n: int):
        images, cells, objects, texts, prompts, labels, pairs = [], [], [], [], [], [], []
        while len(pairs) < n:
            p = scenes.sample_prompt(self.py_rng, self.train, "sqrt")
            d = mismatch.draw_parts(p, int(self.rng.integers(2**31)))
            if self.rng.random() < 0.15:
                d = mismatch.add_distractor(d, self.rng) or d
            text = p
            alt = mismatch.paraphrase(p)
            if alt is not None and alt in self.train_set and self.rng.random() < 0.3:
                text = alt
            if self.rng.random() < 0.5:
                q, e = self._prompt_negative(d), d
            else:
                q, e = text, self._image_negative(d)
            if q is None or e is None:
                continue
            label = mismatch.holds(mismatch.visible(e), q)
            if label is None or mismatch.holds(mismatch.visible(d), text) is not True:
                continue
            images.append(mismatch.paint(d, self.rng))
            cells.append(mismatch.cell_targets(d, 16)[:2])
            objects.append(visible_objects(d))
            pos = len(texts)
            texts += [text.text, q.text]
            prompts += [text, q]
            labels += [1.0, float(label)]
            if e is not d:
                images.append(mismatch.paint(e, self.rng))
                cells.append(mismatch.cell_targets(e, 16)[:2])
                objects.append(visible_objects(e))
            pos_image = len(images) - (2 if e is not d else 1)
            pairs.append((pos, pos + 1, pos_image, len(images) - 1))  # caption rows, image rows
        return (np.stack(images), torch.from_numpy(np.stack(cells)), objects, texts, prompts, torch.tensor(labels),
                pairs)


class _PyRandom:
    """`random.Random`-like choice()/choices() over the numpy stream (so one state resumes everything)."""

    def __init__(self, rng):
        self.rng = rng

    def choice(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def choices(self, seq, weights):
        w = np.asarray(weights, dtype=np.float64)
        return [seq[int(self.rng.choice(len(seq), p=w / w.sum()))]]


def blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image Gaussian blur of [B, 3, H, W] (sigma [B], pixels; 0 = unchanged)."""
    taps = torch.arange(-3, 4, dtype=x.dtype)
    k = torch.exp(-0.5 * (taps[None] / sigma.clamp(min=1e-3)[:, None]) ** 2)
    k = k / k.sum(1, keepdim=True)  # [B, 7]
    b, c, h, w = x.shape
    y = x.reshape(1, b * c, h, w)
    kk = k.repeat_interleave(c, 0)
    y = F.conv2d(F.pad(y, (3, 3, 0, 0), mode="replicate"), kk.view(b * c, 1, 1, 7), groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, 3, 3), mode="replicate"), kk.view(b * c, 1, 7, 1), groups=b * c)
    return y.reshape(b, c, h, w)


@torch.no_grad()
def through_vae(images: np.ndarray, vae, rng: np.random.Generator) -> np.ndarray:
    """Images encoded and decoded by the toy VAE; half of them with Gaussian noise (up to 0.3 of the latents' std)
    added to the latent, the kind of smear a generator leaves."""
    x = torch.from_numpy(images)
    latent = vae.encode(x)
    scale = torch.from_numpy(rng.uniform(0, 0.3, len(x)) * (rng.random(len(x)) < 0.5)).float()
    latent = latent + scale.view(-1, 1, 1, 1) * torch.from_numpy(
        rng.standard_normal(latent.shape).astype(np.float32)) * latent.std()
    return vae.decode(latent).reshape(-1, 64, 64, 3).float().clamp(0, 1).numpy()


def vae_pool(data: Sampler, vae, rng, batches: int, size: int) -> list:
    """`batches` batches whose images went through the toy VAE once (decoding is the costly part of a step, so
    these are drawn again and again, each time with fresh pixel noise and blur)."""
    pool = []
    for _ in range(batches):
        images, *rest = data.batch(size)
        pool.append((through_vae(images, vae, rng), *rest))
    return pool


@torch.no_grad()
def augment(images: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """Float images [B, 64, 64, 3] -> normalised [B, 3, 64, 64], with pixel noise and blur on some."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    sigma = torch.from_numpy(rng.uniform(0.3, 1.0, len(x)) * (rng.random(len(x)) < 0.3)).float()
    x = torch.where((sigma > 0).view(-1, 1, 1, 1), blur(x, sigma), x)
    noise = torch.from_numpy(rng.uniform(0, 0.03, len(x)) * (rng.random(len(x)) < 0.5)).float()
    x = (x + noise.view(-1, 1, 1, 1) * torch.from_numpy(rng.standard_normal(x.shape).astype(np.float32))).clamp(0, 1)
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def blobs(objects, grid: int = 16) -> np.ndarray:
    """[O, grid * grid] float32: each object's unit-mass Gaussian centre blob on the model's cell grid."""
    cell = scenes.SIZE / grid
    c = (np.arange(grid) + 0.5) * cell
    out = np.zeros((len(objects), grid * grid), dtype=np.float32)
    for i, (_, _, x, y) in enumerate(objects):
        g = np.exp(-((c[None, :] - x) ** 2 + (c[:, None] - y) ** 2) / (2 * BLOB_SIGMA ** 2))
        out[i] = (g / g.sum()).ravel()
    return out


def phrase_objects(p: scenes.Prompt) -> list[scenes.Obj]:
    """The prompt's object phrases in the order its text says them (what `ToyMatchNet.phrases` parses)."""
    return [p.objects[0]] if p.category == "counting" else list(p.objects)


def losses(net, pixels, cells, objects, texts, prompts, labels, pairs, rank_weight, aux_weight):
    """Match cross-entropy + ranking of each scene's pair + dense targets: each cell's colour and shape, the centre
    density, and per caption phrase its density, its count and (at object centres) which objects it names."""
    tokens = net.image_tokens(pixels)
    colour, shape = net.match_aux(tokens).split([len(scenes.COLORS) + 1, len(scenes.SHAPES) + 1], -1)
    target = cells.flatten(2)  # [B, 2, cells]
    aux_cells = F.cross_entropy(colour.transpose(1, 2), target[:, 0]) + F.cross_entropy(shape.transpose(1, 2),
                                                                                         target[:, 1])
    delta = net.centre_density(tokens)
    grid = net.grid
    maps = [blobs(o, grid) for o in objects]
    centre_target = torch.from_numpy(np.stack([m.sum(0) if len(m) else np.zeros(grid * grid, np.float32)
                                               for m in maps]))
    n_objects = torch.tensor([float(len(o)) for o in objects])
    aux_centre = 10 * ((delta - centre_target) ** 2).sum(-1).mean() + ((delta.sum(-1) - n_objects) ** 2).mean()
    caption_rows = [r for pair in pairs for r in pair[:2]]
    image_rows = [r for pair in pairs for r in pair[2:]]
    logits, info = net(None, net.tokenize([texts[r] for r in caption_rows]), image_tokens=tokens[image_rows],
                       details=True)
    slots = info["density"].shape[1]
    target = torch.zeros_like(info["density"])
    present = torch.zeros(target.shape[:2], dtype=torch.bool)
    for row, (c, i) in enumerate(zip(caption_rows, image_rows, strict=True)):
        for j, o in enumerate(phrase_objects(prompts[c])[:slots]):
            names = [k for k, (s, col, _, _) in enumerate(objects[i]) if s == o.shape and o.color in (None, col)]
            if names:
                target[row, j] = torch.from_numpy(maps[i][names].sum(0))
            present[row, j] = True
    err = ((info["density"] - target) ** 2).sum(-1)
    count_err = (info["count"] - target.sum(-1)) ** 2
    # which objects the phrase names, at the objects' centres (weight: all objects' blobs), as a classification
    weight = centre_target[image_rows][:, None].expand_as(target)
    named = (target / weight.clamp(min=1e-6)).clamp(0, 1)
    bce_named = (F.binary_cross_entropy_with_logits(info["agree"], named, reduction="none") * weight).sum(-1)
    bce_named = bce_named / weight.sum(-1).clamp(min=1e-6)
    aux_phrase = (10 * err + count_err + bce_named)[present].mean()
    bce = F.binary_cross_entropy_with_logits(logits, labels[caption_rows])
    pos, neg = logits[0::2], logits[1::2]
    negative = labels[[p[1] for p in pairs]] == 0
    rank = F.softplus(neg - pos)[negative].mean() if negative.any() else logits.sum() * 0
    loss = bce + rank_weight * rank + aux_weight * (aux_cells + aux_centre + aux_phrase)
    return loss, {"bce": round(bce.item(), 4), "rank": round(rank.item(), 4), "cells": round(aux_cells.item(), 4),
                  "centre": round(aux_centre.item(), 4), "phrase": round(aux_phrase.item(), 4)}


# ------------------------------------------------------------- validation

def validation_set(seeds=range(95_000, 95_002)):
    """Unseen scenes of *training* prompts with their prompt-side mismatches (training prompts only) and image-side
    edits: what a run is judged by. Fixed; held-out prompts are left to the benchmark."""
    rng = np.random.default_rng(123)
    train = set(scenes.train_prompts())
    rows = []  # (image, caption, group, row of the scene's own pair): group = edit kind, "own" for the match
    for p in scenes.train_prompts():
        for s in seeds:
            d = mismatch.draw_parts(p, s)
            base = len(rows)
            rows.append((scenes.make_scene(p, s).image, p.text, "own", base))
            for kind in mismatch.PROMPT_EDITS:
                for q in [q for q in mismatch.prompt_edits(p, kind) if q in train][:2]:
                    rows.append((rows[base][0], q.text, kind, base))
            for kind in mismatch.IMAGE_EDITS:
                e = mismatch.image_edit(d, kind, rng)
                if e is not None and mismatch.holds(mismatch.visible(e), p) is False:
                    rows.append((mismatch.paint(e, rng), p.text, kind, base))
    return rows


@torch.no_grad()
def validation_preferences(net, rows) -> dict:
    """How often each scene's own pair scores above each kind of mismatch (1.0 = always), and the worst kind."""
    was = net.training
    net.eval()
    x = torch.from_numpy(np.stack([r[0] for r in rows])).permute(0, 3, 1, 2)
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    logits = torch.cat([net(x[i:i + 256], net.tokenize([r[1] for r in rows[i:i + 256]]))
                        for i in range(0, len(rows), 256)])
    net.train(was)
    wins: dict[str, list[bool]] = {}
    for i, (_, _, kind, base) in enumerate(rows):
        if kind != "own":
            wins.setdefault(kind, []).append(bool(logits[base] > logits[i]))
    out = {f"val_{k}": round(float(np.mean(v)), 3) for k, v in wins.items()}
    out["val_worst"] = min(out.values())
    return out


# --------------------------------------------------------- state and save

def save_state(path: str, net, opt, rng, step: int) -> None:
    """Weights, AdamW moments and the data stream, atomically (temporary files, then rename)."""
    import safetensors.torch

    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {f"net.{k}": v.detach().contiguous() for k, v in net.state_dict().items()}
    params = list(net.parameters())
    for i, p in enumerate(params):
        for key, value in opt.state.get(p, {}).items():
            tensors[f"opt.{i}.{key}"] = torch.as_tensor(value).detach().contiguous().reshape(-1) if value.ndim == 0 \
                else value.detach().contiguous()
    safetensors.torch.save_file(tensors, str(directory / "state.tmp"))
    (directory / "meta.tmp").write_text(json.dumps({"step": step, "rng": rng.bit_generator.state}))
    os.replace(directory / "state.tmp", directory / "state.safetensors")
    os.replace(directory / "meta.tmp", directory / "meta.json")


def resume(path: str, net, opt, rng) -> int:
    """The step a saved state stopped at (0 when there is none), restoring weights, moments and data stream."""
    directory = Path(path)
    if not (directory / "meta.json").is_file() or not (directory / "state.safetensors").is_file():
        return 0
    import safetensors.torch

    tensors = safetensors.torch.load_file(str(directory / "state.safetensors"))
    meta = json.loads((directory / "meta.json").read_text())
    net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    for i, p in enumerate(net.parameters()):
        state = {key.split(".", 2)[2]: v for key, v in tensors.items() if key.startswith(f"opt.{i}.")}
        if state:
            state["step"] = state["step"].reshape(())
            opt.state[p] = state
    rng.bit_generator.state = meta["rng"]
    return int(meta["step"])


def save(net, out: str = "") -> None:
    from . import models

    _train.save_weights(net.state_dict(), WEIGHTS_NAME, out)
    config = dict(net.config(), mean=list(MEAN), std=list(STD))
    path = (Path(out) if out else models.WEIGHTS) / Path(WEIGHTS_NAME).with_suffix(".json")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(config, indent=1) + "\n")
    tmp.replace(path)
    if not out:
        models.record_hash(path.name)


if __name__ == "__main__":
    main()
