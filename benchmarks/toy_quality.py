"""Toy-GenEval quality of the shipped toy teacher on the held-out prompts, as a markdown table.

    ~/.cache/quickstep/venv/bin/python benchmarks/toy_quality.py            # writes benchmarks/results/toy_quality.md

Rows: the teacher at 25 steps with CFG (core euler / normal, what KSampler runs) and at 1, 2 and 4 steps with the
Turbo schedule (Quickstep's Turbo sigmas + sampler through SamplerCustom's code path), same CFG. Each held-out prompt
is sampled `--images` times (seeds fixed); scores come from the analytic evaluator (toyworld/evaluate.py), never from
the reward. Two ceiling rows: real scenes of the same prompts, and the same scenes through the toy VAE. A last row
scores the teacher on up to six *training* prompts per category: its gap to the held-out row is the cost of
generalization, and its gap to the ceiling is plain fidelity. `--unet` scores another checkpoint (a training run's
`--out` file) against the same table.
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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8, help="images per prompt")
    parser.add_argument("--unet", default="", help="UNet safetensors to score instead of the shipped teacher "
                        "(e.g. a checkpoint of a training run written with --out)")
    parser.add_argument("--cfg", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "toy_quality.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    harness.setup_inprocess_host("current")

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


if __name__ == "__main__":
    main()
