"""How much of what the toy evaluator judges each toy reward sees, side by side in one run (CPU, 1 thread, ~10 min).

    ~/.cache/quickstep/venv/bin/python benchmarks/toy_reward.py        # writes benchmarks/results/toy_reward.md

For each toy reward (the toy CLIP score and the toy match reward, `QuickstepToyReward`'s two models):

1. Real scenes (`--seeds` scenes per held-out prompt, seeds no training script draws; and, for comparison, a quarter
   as many unseen scenes of every training prompt): how often the scene scores higher with its own prompt than with
   each prompt-side mismatch, and higher than each image-side edit of it scores with that prompt
   (`toyworld/mismatch.py`; an edit counts only where it makes the prompt false). 0.5 = chance. Plus how often mild
   pixel noise (std 0.03, which the evaluator ignores) lowers the score.
2. Teacher images (Turbo 2 and 4 steps at CFG 4, and 25 steps euler/normal at CFG 4; the held-out prompts and
   `--train-prompts` training prompts per category; `--images` seeds per prompt): within one sampler setting and one
   prompt, the pairwise agreement with the evaluator (over the pairs the evaluator splits, how often the passing
   image has the higher reward; ties count half), per category; and best-of-N by reward (N = `--images`) against a
   random pick (the mean pass rate) and the oracle (any image passes).
3. Noise ascent: ReNO (`samplers/reno.py`, the paper's defaults) for `--iterations` iterations on the `--reno-model`
   at `--reno-steps` Turbo steps, CFG 1, one prompt per category of the held-out set: the reward and the evaluator's
   pass rate before and after, and how many optimised images the evaluator finds empty.

The evaluator (`toyworld/evaluate.py`) is only ever the judge here; no reward was trained on its verdicts.
"""

from __future__ import annotations

import argparse
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import harness  # noqa: E402

harness.register_pack()

REWARDS = ("clip", "match")
SETTINGS = (("Turbo, CFG 4", 2, "turbo"), ("Turbo, CFG 4", 4, "turbo"), ("euler/normal, CFG 4", 25, "core"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=16, help="real scenes per held-out prompt")
    parser.add_argument("--images", type=int, default=8, help="teacher images per prompt and setting (best-of-N)")
    parser.add_argument("--train-prompts", type=int, default=2, help="training prompts per category (teacher part)")
    parser.add_argument("--reno-model", default="student", choices=["teacher", "student"])
    parser.add_argument("--reno-steps", type=int, default=4)
    parser.add_argument("--reno-images", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--parts", default="real,teacher,reno", help="which parts to run (comma-separated)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "toy_reward.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    harness.setup_inprocess_host("current")
    from quickstep.toyworld.models import load_toy_reward

    rewards = {name: load_toy_reward(model=name) for name in REWARDS}
    parts = set(args.parts.split(","))
    sections = []
    if "real" in parts:
        sections.append(real_scenes(rewards, args))
    if "teacher" in parts:
        sections.append(teacher_images(rewards, args))
    if "reno" in parts:
        sections.append(noise_ascent(rewards, args))
    command = "~/.cache/quickstep/venv/bin/python benchmarks/toy_reward.py" + "".join(
        f" --{k.replace('_', '-')} {getattr(args, k)}" for k in ("seeds", "images", "train_prompts", "reno_model",
                                                                  "reno_steps", "reno_images", "iterations",
                                                                  "threads"))
    text = (f"# Toy rewards against the toy evaluator\n\nCommand: `{command}`\n\nRewards: **clip** = the toy CLIP "
            f"score (100 x cosine), **match** = the toy match reward (log P(match)). The evaluator is the judge "
            f"only.\n\n" + "\n".join(sections))
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


@torch.no_grad()
def scores(reward, images: np.ndarray | list, texts: list[str], chunk: int = 128) -> np.ndarray:
    images = np.asarray(images, dtype=np.float32)
    out = [reward.score(torch.from_numpy(images[i:i + chunk]), texts[i:i + chunk]).cpu().numpy()
           for i in range(0, len(texts), chunk)]
    return np.concatenate(out)


def fmt(values) -> str:
    return f"{np.mean(values):.2f}" if len(values) else "-"


# -------------------------------------------------------------- real scenes

def comparisons(prompts, seeds: int, rng):
    """(images, captions, groups) for scenes of `prompts`: each scene with its own prompt, each prompt-side mismatch,
    each image-side edit that makes the prompt false, and the scene with mild pixel noise. A group is (kind, index of
    the scene's own pair)."""
    from quickstep.toyworld import mismatch, scenes

    images, texts, groups = [], [], []
    for p in prompts:
        for k in range(seeds):
            seed = 60_000 + k
            own = len(texts)
            images.append(scenes.make_scene(p, seed).image)
            texts.append(p.text)
            groups.append(("own", own))
            for kind in mismatch.PROMPT_EDITS:
                for q in mismatch.prompt_edits(p, kind):
                    images.append(images[own])
                    texts.append(q.text)
                    groups.append((kind, own))
            d = mismatch.draw_parts(p, seed)
            for kind in mismatch.IMAGE_EDITS:
                e = mismatch.image_edit(d, kind, rng)
                if e is not None and mismatch.holds(mismatch.visible(e), p) is False:
                    images.append(mismatch.paint(e, rng))
                    texts.append(p.text)
                    groups.append((kind, own))
            images.append(np.clip(images[own] + rng.normal(0, 0.03, images[own].shape), 0, 1).astype(np.float32))
            texts.append(p.text)
            groups.append(("noise", own))
    return images, texts, groups


def real_scenes(rewards, args) -> str:
    from quickstep.toyworld import mismatch, scenes

    t0 = time.time()
    splits = {"held-out": scenes.heldout_prompts(), "training": scenes.train_prompts()}
    seeds = {"held-out": args.seeds, "training": max(1, args.seeds // 4)}
    table, counts = {}, {}
    for split, prompts in splits.items():
        images, texts, groups = comparisons(prompts, seeds[split], np.random.default_rng(7))
        for name, reward in rewards.items():
            s = scores(reward, images, texts)
            wins: dict[str, list[float]] = {}
            for i, (kind, own) in enumerate(groups):
                if kind != "own":
                    wins.setdefault(kind, []).append(float(s[own] > s[i]))
            table[split, name] = wins
        counts[split] = sum(g[0] == "own" for g in groups)
    columns = [(split, name) for split in splits for name in REWARDS]
    kinds = [k for k in (*mismatch.PROMPT_EDITS, *mismatch.IMAGE_EDITS) if k in table[columns[0]]]
    lines = [f"## 1. Real scenes\n\nShare of comparisons the scene with its own prompt wins (target >= 0.95 on "
             f"held-out prompts; 0.5 = chance). Held-out prompts: {counts['held-out']} scenes ({args.seeds} per "
             f"prompt); training prompts: {counts['training']} *unseen* scenes ({seeds['training']} per prompt), to "
             f"tell what a reward failed to learn from what it failed to carry over to new prompts. n = comparisons "
             f"on held-out prompts.\n",
             "| side | mismatch | n | " + " | ".join(f"{name} ({split})" for split, name in columns) + " |",
             "|---|---|---|" + "---|" * len(columns)]
    for kind in kinds:
        side = "prompt" if kind in mismatch.PROMPT_EDITS else "image"
        lines.append(f"| {side} | {kind.replace('_', ' ')} | {len(table[columns[0]][kind])} | "
                     + " | ".join(fmt(table[c][kind]) for c in columns) + " |")
    worst = {c: min(np.mean(table[c][k]) for k in kinds) for c in columns}
    lines.append("| | **worst kind** | | " + " | ".join(f"**{worst[c]:.2f}**" for c in columns) + " |")
    lines.append(f"| (robustness) | mild noise (std 0.03) *lowers* the score | {len(table[columns[0]]['noise'])} | "
                 + " | ".join(fmt(table[c]["noise"]) for c in columns) + " |")
    lines.append(f"\n{time.time() - t0:.0f} s.\n")
    return "\n".join(lines)


# ------------------------------------------------------------ teacher images

def teacher_images(rewards, args) -> str:
    from quickstep.toyworld import evaluate, generate, models, scenes

    t0 = time.time()
    model, clip, vae = models.load_unet(), models.load_clip(), models.load_vae()
    held = scenes.heldout_prompts()
    seen = [p for c in scenes.CATEGORIES for p in [q for q in scenes.train_prompts() if q.category == c]
            [:args.train_prompts]]
    cats = list(scenes.CATEGORIES)
    lines = [f"## 2. Teacher images\n\n{len(held)} held-out and {len(seen)} training prompts x {args.images} seeds per "
             f"sampler setting. **Agreement**: over the image pairs of one prompt and one setting that the evaluator "
             f"splits (one passes, one fails), how often the reward ranks the passing one higher (ties count half; "
             f"target >= 0.80 in every category; `-`: no such pair; n = pairs). **Best-of-{args.images}**: pass rate "
             f"of the image with the highest reward, against a random pick (the mean pass rate) and the oracle (some "
             f"image passes).\n",
             "| setting | prompts | reward | " + " | ".join(c.replace("_", " ") for c in cats)
             + " | all pairs (n) | best-of-N | random | oracle |",
             "|---|---|---|" + "---|" * len(cats) + "---|---|---|---|"]
    for label, steps, schedule in SETTINGS:
        for split, prompts in (("held-out", held), ("training", seen)):
            images, passed, prompt_of = [], [], []
            for i, p in enumerate(prompts):
                imgs = generate.sample(model, clip, vae, p.text, seed=3000 + i, batch=args.images, steps=steps,
                                       cfg=4.0, schedule=schedule)
                images += list(imgs)
                passed += [evaluate.score(im, p).passed for im in imgs]
                prompt_of += [p] * len(imgs)
            passed = np.array(passed)
            for name, reward in rewards.items():
                s = scores(reward, images, [p.text for p in prompt_of])
                agree: dict[str, list[float]] = {c: [] for c in cats}
                best, rand, oracle = [], [], []
                for j in range(len(prompts)):
                    idx = np.arange(j * args.images, (j + 1) * args.images)
                    cat = prompts[j].category
                    for a, b in combinations(idx, 2):
                        if passed[a] != passed[b]:
                            good, bad = (a, b) if passed[a] else (b, a)
                            agree[cat].append(1.0 if s[good] > s[bad] else 0.5 if s[good] == s[bad] else 0.0)
                    best.append(passed[idx[np.argmax(s[idx])]])
                    rand.append(passed[idx].mean())
                    oracle.append(passed[idx].any())
                pooled = [v for c in cats for v in agree[c]]
                lines.append(f"| {label}, {steps} steps | {split} | {name} | "
                             + " | ".join(f"{fmt(agree[c])} ({len(agree[c])})" if agree[c] else "-" for c in cats)
                             + f" | {fmt(pooled)} ({len(pooled)}) | **{np.mean(best):.2f}** | {np.mean(rand):.2f} | "
                               f"{np.mean(oracle):.2f} |")
            print(lines[-1], flush=True)
    lines.append(f"\n{time.time() - t0:.0f} s.\n")
    return "\n".join(lines)


# -------------------------------------------------------------- noise ascent

def noise_ascent(rewards, args) -> str:
    from quickstep.reward.stack import RewardStack
    from quickstep.samplers import reno
    from quickstep.toyworld import evaluate, generate, models, scenes

    t0 = time.time()
    model = models.load_student() if args.reno_model == "student" else models.load_unet()
    clip, vae = models.load_clip(), models.load_vae()
    held = scenes.heldout_prompts()
    prompts = [next(p for p in held if p.category == c) for c in scenes.CATEGORIES]
    config = reno.ReNOConfig(iterations=args.iterations, steps=args.reno_steps, cfg=1.0)
    latent = {"samples": torch.zeros(args.reno_images, 4, models.LATENT, models.LATENT)}
    lines = [f"## 3. Noise ascent\n\nReNO (lr 5, SGD + Nesterov, per-image gradient clip 0.1, chi regulariser 0.01) "
             f"for {args.iterations} iterations on the {args.reno_model} at {args.reno_steps} Turbo steps, CFG 1; one "
             f"held-out prompt per category ({', '.join(repr(p.text) for p in prompts)}) x {args.reno_images} seeds. "
             f"Reward = the optimised reward's mean score; pass = the evaluator's pass rate; empty = optimised images "
             f"in which the evaluator finds no object at all.\n",
             "| reward | reward before | reward after | pass before | pass after | fixed | broken | empty after | "
             "seconds |", "|---|---|---|---|---|---|---|---|---|"]
    for name, reward in rewards.items():
        t1 = time.time()
        stack = RewardStack([(reward, 1.0)])
        before, after, pass0, pass1, empty = [], [], [], [], 0
        for i, p in enumerate(prompts):
            with torch.inference_mode():
                pos, neg = generate.encode(clip, p.text), generate.encode(clip, "")
                result = reno.optimise_noise(model, vae, stack, pos, neg, latent, p.text, 4000 + i, config)
            before.append(result.initial_scores["total"])
            after.append(result.best_scores["total"])
            pass0 += [evaluate.score(im.numpy(), p).passed for im in result.initial_images]
            pass1 += [evaluate.score(im.numpy(), p).passed for im in result.images]
            empty += sum(not evaluate.detect(im.numpy()) for im in result.images)
        pass0, pass1 = np.array(pass0), np.array(pass1)
        lines.append(f"| {name} | {torch.cat(before).mean():.3f} | {torch.cat(after).mean():.3f} | "
                     f"{pass0.mean():.2f} | **{pass1.mean():.2f}** | {int((~pass0 & pass1).sum())} | "
                     f"{int((pass0 & ~pass1).sum())} | {empty} / {len(pass1)} | {time.time() - t1:.0f} |")
        print(lines[-1], flush=True)
    lines.append(f"\n{time.time() - t0:.0f} s.\n")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
