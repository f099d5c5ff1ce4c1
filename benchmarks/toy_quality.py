"""Toy-GenEval quality of the shipped toy teacher on the held-out prompts, as a markdown table.

    ~/.cache/quickstep/venv/bin/python benchmarks/toy_quality.py            # writes benchmarks/results/toy_quality.md

Rows: the teacher at 25 steps with CFG (core euler / normal, what KSampler runs) and at 1, 2 and 4 steps with the
Turbo schedule (Quickstep's Turbo sigmas + sampler through SamplerCustom's code path), same CFG. Each held-out prompt
is sampled `--images` times (seeds fixed); scores come from the analytic evaluator (toyworld/evaluate.py), never from
the reward. Two ceiling rows: real scenes of the same prompts, and the same scenes through the toy VAE. A last row
scores the teacher on up to six *training* prompts per category: its gap to the held-out row is the cost of
generalization, and its gap to the ceiling is plain fidelity. `--unet` scores another checkpoint (a training run's
`--out` file) against the same table.

    ~/.cache/quickstep/venv/bin/python benchmarks/toy_quality.py --reno     # writes benchmarks/results/toy_reno.md

`--reno` scores ReNO instead (samplers/reno.py, the QuickstepReNO node's code) with the toy CLIP reward on the same
held-out prompts: the few-step model alone (Turbo grid, eta 0: exactly ReNO's iteration 0), the same noises after
ReNO (paper defaults, 50 iterations), and best-of-N by the same reward at the same wall-clock as ReNO (for each
prompt, fresh seeds are sampled and scored until ReNO's time for that prompt is spent; the first batch is ReNO's
start, so best-of-N never falls below the model alone either).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import harness  # noqa: E402

harness.register_pack()


def main(argv=None):
    from quickstep.toyworld.models import NAMED

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8, help="images per prompt")
    parser.add_argument("--unet", default="", help="UNet safetensors to score instead of the shipped teacher "
                        "(e.g. a checkpoint of a training run written with --out)")
    parser.add_argument("--cfg", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="", help="default: benchmarks/results/toy_quality.md (toy_reno.md with --reno)")
    parser.add_argument("--reno", action="store_true", help="score ReNO and best-of-N instead of the teacher table")
    parser.add_argument("--model", default="teacher", choices=NAMED,
                        help="--reno: the generator (a QuickstepToyCheckpoint model name; v2 ones with the v2 CLIP)")
    parser.add_argument("--steps", type=int, default=2, help="--reno: Turbo steps of the generator")
    parser.add_argument("--iterations", type=int, default=50, help="--reno: ReNO iterations")
    parser.add_argument("--prompts", type=int, default=0, help="--reno: only the first N held-out prompts")
    parser.add_argument("--reward", default="clip", choices=["clip", "match"],
                        help="--reno: the toy reward (QuickstepToyReward's model)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    harness.setup_inprocess_host("current")
    if args.reno:
        return reno_table(args)
    args.out = args.out or str(ROOT / "benchmarks" / "results" / "toy_quality.md")

    from quickstep.toyworld import evaluate, generate, models, scenes

    model, clip, vae = models.load_unet(Path(args.unet) if args.unet else None), models.load_clip(), models.load_vae()
    prompts = scenes.heldout_prompts()
    rows = []
    real = [evaluate.score(scenes.make_scene(p, 50_000 + k).image, p) for p in prompts for k in range(args.images)]
    rows.append(("real scenes (evaluator ceiling)", "-", evaluate.summarize(real), 0.0))
    with torch.no_grad():  # what any model in this latent space can reach at best: scenes through encode + decode
        imgs = torch.from_numpy(np.stack([scenes.make_scene(p, 50_000 + k).image for p in prompts
                                          for k in range(args.images)]))
        rec = vae.decode(vae.encode(imgs)).reshape(-1, 64, 64, 3).float().clamp(0, 1).numpy()
    pairs = [p for p in prompts for _ in range(args.images)]
    rows.append(("real scenes through the toy VAE (latent ceiling)", "-",
                 evaluate.summarize(evaluate.score(r, p) for r, p in zip(rec, pairs, strict=True)), 0.0))

    def teacher_row(name, steps, schedule, scored):
        t0 = time.time()
        results = []
        for i, p in enumerate(scored):
            imgs = generate.sample(model, clip, vae, p.text, seed=1000 + i, batch=args.images, steps=steps,
                                   cfg=args.cfg, schedule=schedule)
            results += [evaluate.score(img, p) for img in imgs]
        rows.append((name, str(steps), evaluate.summarize(results), time.time() - t0))
        print(f"{name} {steps}: {rows[-1][2]['overall']:.3f}", flush=True)

    teacher_row("teacher, euler/normal + CFG", 25, "core", prompts)
    for steps in (1, 2, 4):
        teacher_row("teacher, Turbo schedule", steps, "turbo", prompts)
    # the same teacher on prompts it was trained on: the gap to the held-out row is what generalization costs
    seen = [p for c in scenes.CATEGORIES for p in [q for q in scenes.train_prompts() if q.category == c][:6]]
    teacher_row(f"teacher on {len(seen)} *training* prompts, euler/normal + CFG", 25, "core", seen)
    cats = list(scenes.CATEGORIES)
    lines = [f"Toy-GenEval on the {len(prompts)} held-out prompts x {args.images} images (CFG {args.cfg}, CPU, "
             f"torch threads {args.threads}){'; UNet ' + args.unet if args.unet else ''}.", "",
             "| model | steps | overall | " + " | ".join(c.replace("_", " ") for c in cats) + " | seconds |",
             "|---|---|---|" + "---|" * len(cats) + "---|"]
    for name, steps, s, secs in rows:
        lines.append(f"| {name} | {steps} | **{s['overall']:.3f}** | " + " | ".join(f"{s[c]:.2f}" for c in cats)
                     + f" | {secs:.0f} |")
    table = "\n".join(lines) + "\n"
    print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("# Toy-world quality\n\nCommand: `~/.cache/quickstep/venv/bin/python "
                              "benchmarks/toy_quality.py`\n\n" + table)


def reno_table(args):
    import comfy.sample

    from quickstep.reward.stack import RewardStack
    from quickstep.samplers import reno
    from quickstep.samplers.ksampler import make_sampler, make_sigmas
    from quickstep.toyworld import evaluate, generate, models, scenes
    from quickstep.toyworld.models import load_toy_reward

    model, clip = models.load_named(args.model)
    vae = models.load_vae()
    reward = load_toy_reward(model=args.reward)
    name = {"clip": "toy CLIP", "match": "toy match"}[args.reward]
    stack = RewardStack([(reward, 1.0)])
    prompts = scenes.heldout_prompts()[:args.prompts or None]
    config = reno.ReNOConfig(iterations=args.iterations, steps=args.steps, cfg=args.cfg)
    latent = {"samples": torch.zeros(args.images, 4, models.LATENT, models.LATENT)}
    sampler, sigmas = make_sampler("manual", 0.0, 1.0), make_sigmas(model, args.steps, 1.0)
    start, optimised, best_of_n = [], [], []
    rewards = {"start": [], "reno": [], "best_of_n": []}
    seconds = {"start": 0.0, "reno": 0.0, "best_of_n": 0.0}
    candidates = []
    for i, p in enumerate(prompts):
        with torch.inference_mode():
            pos, neg = generate.encode(clip, p.text), generate.encode(clip, "")
            t0 = time.perf_counter()
            result = reno.optimise_noise(model, vae, stack, pos, neg, latent, p.text, 1000 + i, config)
            budget = time.perf_counter() - t0
            seconds["reno"] += budget
            start += [evaluate.score(im.numpy(), p) for im in result.initial_images]
            optimised += [evaluate.score(im.numpy(), p) for im in result.images]
            rewards["start"].append(result.initial_scores["total"])
            rewards["reno"].append(result.best_scores["total"])
            t0, n, best, best_images = time.perf_counter(), 0, None, None
            while n == 0 or time.perf_counter() - t0 < budget:
                seed = 1000 + i if n == 0 else 100_000 + 1000 * i + n
                noise = comfy.sample.prepare_noise(latent["samples"], seed)
                out = comfy.sample.sample_custom(model, noise, args.cfg, sampler, sigmas, pos, neg,
                                                 latent["samples"], seed=seed, disable_pbar=True)
                images = vae.decode(out).reshape(-1, 64, 64, 3).float().clamp(0, 1)
                score = reward.score(images, p.text)
                if n == 0:
                    seconds["start"] += time.perf_counter() - t0
                if best is None:
                    best, best_images = score, images
                else:
                    better = score > best
                    best = torch.where(better, score, best)
                    best_images = torch.where(better.view(-1, 1, 1, 1), images, best_images)
                n += 1
            seconds["best_of_n"] += time.perf_counter() - t0
            candidates.append(n)
            best_of_n += [evaluate.score(im.numpy(), p) for im in best_images]
            rewards["best_of_n"].append(best)
        print(f"{p.text}: start {evaluate.summarize(start[-args.images:])['overall']:.2f} reno "
              f"{evaluate.summarize(optimised[-args.images:])['overall']:.2f} best-of-{n} "
              f"{evaluate.summarize(best_of_n[-args.images:])['overall']:.2f}", flush=True)
    cats = list(scenes.CATEGORIES)
    what = f"{args.model} at {args.steps} Turbo step(s), eta 0, CFG {args.cfg:g}"
    rows = [(f"{what} (the ReNO start)", start, "start"),
            (f"+ ReNO, {name} reward, {args.iterations} iterations", optimised, "reno"),
            (f"best-of-N by the {name} reward at ReNO's wall-clock (N = {min(candidates)}-{max(candidates)}, "
             f"mean {sum(candidates) / len(candidates):.1f})", best_of_n, "best_of_n")]
    lines = [f"ReNO on the toy world: {len(prompts)} held-out prompts x {args.images} images, {what}; torch threads "
             f"{args.threads}, CPU. Reward: the {name} reward "
             f"({'100 x cosine' if args.reward == 'clip' else 'log P(match)'}); toy-GenEval from the analytic "
             f"evaluator, which no reward sees.", "",
             "| setting | overall | " + " | ".join(c.replace("_", " ") for c in cats) + " | mean reward | seconds |",
             "|---|---|" + "---|" * len(cats) + "---|---|"]
    for name, results, key in rows:
        s = evaluate.summarize(results)
        mean_reward = torch.cat(rewards[key]).mean().item()
        lines.append(f"| {name} | **{s['overall']:.3f}** | " + " | ".join(f"{s.get(c, float('nan')):.2f}" for c in cats)
                     + f" | {mean_reward:.2f} | {seconds[key]:.0f} |")
    table = "\n".join(lines) + "\n"
    print(table)
    out = Path(args.out or ROOT / "benchmarks" / "results" / "toy_reno.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    command = "~/.cache/quickstep/venv/bin/python benchmarks/toy_quality.py --reno" + \
        "".join(f" --{k} {getattr(args, k)}" for k in ("model", "steps", "iterations", "images", "cfg", "threads",
                                                       "reward"))
    out.write_text(f"# ReNO on the toy world\n\nCommand: `{command}`\n\n" + table)


if __name__ == "__main__":
    main()
