"""The toy world v2 device run (issue 15): text encoder, then teacher, within one budget; results and weights to $OUT.

Run through benchmarks/device_toy_v2.sh (it sets up the carried ComfyUI and packages). In one process:

1. Only with `--clip train` (the default, `--clip v2`, uses the shipped toyworld/weights/clip_v2): the v2 toy CLIP
   (toyworld/train_text_v2.py) retrained on the GPU: phase 1 (image-text contrast against all
   training captions, hard-negative term and pair batches, text-side supervised contrast, slot heads; ~1 min) and
   phase 2 (the same, plus the text losses on captions outside the grammar; ~0.75 min), on the GPU, into
   $OUT/clip_v2/. Then, either way, benchmarks/toy_text_encoder.py's table, v1 against the encoder used.
2. The v2 teacher (`python -m toyworld.train_unet --arch v2`, toyworld/train_unet_v2.py) conditioned by that encoder:
   400k scenes of training prompts (16 processes), bf16 + TF32, batch 1024, a schedule sized at step 60 to end in
   what `--total-minutes` leaves after step 1 and `--score-minutes`, toy-GenEval on training prompts every 2500 steps
   (monitoring), resumable states in `--state` (a rerun on the same warm machine resumes), the EMA to
   $OUT/unet_v2.safetensors.
3. Scoring, every row on the same seeds (benchmarks/toy_quality.py's: seed 1000 + prompt index, 8 images each),
   ComfyUI's KSampler path (euler / normal, 25 steps, CFG 4): real scenes through the toy VAE (latent ceiling), the
   shipped v1 teacher with the v1 CLIP (side by side), the v2 teacher on the 31 held-out prompts and on six training
   prompts per category.
4. $OUT: toy_v2_results.md / .json (per category, the text-encoder table, the cost: device, steps, samples, minutes),
   curves.jsonl (every phase's curve), unet_v2.safetensors, with `--clip train` clip_v2/ (3 files) and, from the
   .sh, device_log.txt: at most 8 files, the most a device call brings back. To ship: copy them to toyworld/weights/ and record their hashes
   (`models.record_hash("unet_v2.safetensors")`, `models.record_hash("clip_v2/model.safetensors")`, ...).

`--dry-run` runs the same code on the CPU in about a minute (tiny data, steps and scoring) to check the path.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FULL = dict(data=400_000, batch=1024, eval_every=2500, eval_prompts=6, eval_images=4, eval_steps=25, workers=16,
            threads=4, save_every=2000)
DRY = dict(data=320, batch=8, eval_every=12, eval_prompts=1, eval_images=1, eval_steps=3, workers=2, threads=1,
           save_every=10)
#: the v2 text encoder's two phases (toyworld/train_text_v2.py), minutes each; the teacher gets what is left
TEXT = {"full": [["--minutes", "1.0", "--steps", "3000"],
                 ["--minutes", "0.75", "--steps", "2500", "--extra", "128", "--seed", "1"]],
        "dry": [["--minutes", "0.1", "--steps", "3", "--data", "200", "--eval-every", "0"],
                ["--minutes", "0.1", "--steps", "3", "--data", "200", "--eval-every", "0", "--extra", "16"]]}
SCORE = {"full": dict(images=8, steps=25, per_category=0), "dry": dict(images=1, steps=4, per_category=1)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: checks the path in about a minute")
    parser.add_argument("--out", default=os.environ.get("OUT", ""), help="results folder (default: $OUT)")
    parser.add_argument("--total-minutes", type=float, default=None,
                        help="wall clock for everything (default 8.5; dry run 1.0): the teacher's training loop gets "
                             "what the text phases and setup leave, less --score-minutes")
    parser.add_argument("--score-minutes", type=float, default=1.3, help="kept back for scoring (dry run: 0.3)")
    parser.add_argument("--clip", default="v2", help="v2 (default: the shipped toyworld/weights/clip_v2), train "
                        "(the v2 text encoder's two phases first, on the device, into $OUT/clip_v2), v1, or a "
                        "CLIPModel directory")
    parser.add_argument("--state", default="/tmp/quickstep_v2", help="folder of the resumable training states")
    parser.add_argument("--skip-train", action="store_true", help="score the weights already in --out only")
    args, extra = parser.parse_known_args(argv)
    if not args.out:
        parser.error("--out (or $OUT) is required: the folder the results and weights are written to")
    t0 = time.time()
    mode = "dry" if args.dry_run else "full"
    size = dict(DRY if args.dry_run else FULL)
    total = args.total_minutes or (1.0 if args.dry_run else 8.5)
    score_minutes = 0.3 if args.dry_run else args.score_minutes
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    state = Path(args.state)
    import torch

    device = "cpu" if args.dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --dry-run on a CPU machine")
    env = {"torch": torch.__version__, "device": torch.cuda.get_device_name() if device == "cuda" else "cpu"}
    print(json.dumps(env), flush=True)
    from host.inprocess import import_host
    from host.locate import find_host

    import_host(find_host("current"), cpu=device == "cpu")  # before the scripts' setup, which would say --cpu
    from toyworld import train_text_v2, train_unet

    clip = args.clip
    text_seconds = 0.0
    if clip == "train" and not args.skip_train:
        t1 = time.time()
        for i, phase in enumerate(TEXT[mode]):
            init = ["--init", str(out / "clip_v2")] if i else []
            train_text_v2.main(phase + init + ["--device", device, "--out", str(out), "--run",
                                               "train_text_v2" + ("_phase2" if i else ""),
                                               "--state", str(state / f"clip_v2_phase{i + 1}.safetensors")])
        text_seconds = time.time() - t1
    if clip == "train":
        clip = str(out / "clip_v2")
    text_table = ""
    if clip not in ("v1",):
        from benchmarks import toy_text_encoder

        table_path = state / "toy_text_encoder.md"
        toy_text_encoder.main(["--v2", clip if clip != "v2" else "", "--out", str(table_path)])
        text_table = table_path.read_text()
    unet_minutes = max(0.1, total - (time.time() - t0) / 60 - score_minutes)
    t2 = time.time()
    if not args.skip_train:
        train_args = ["--arch", "v2", "--device", device, "--clip", clip, "--out", str(out), "--minutes",
                      f"{unet_minutes:.2f}", "--state", str(state / "unet_v2.safetensors"), "--run", "train_unet_v2"]
        train_unet.main(train_args + [f"--{k.replace('_', '-')}={v}" for k, v in size.items()] + extra)
    unet_seconds = time.time() - t2
    curves = []
    for run in ("train_text_v2", "train_text_v2_phase2", "train_unet_v2"):
        log = ROOT / "toyworld" / "logs" / f"{run}.jsonl"
        if log.is_file():
            curves += [dict(json.loads(line), run=run) for line in log.read_text().splitlines()]
    (out / "curves.jsonl").write_text("".join(json.dumps(c) + "\n" for c in curves))
    t3 = time.time()
    rows = score(out / "unet_v2.safetensors", clip, dict(size, **SCORE[mode]))
    done = next((c for c in curves if c.get("run") == "train_unet_v2" and c.get("event") == "done"), {})
    sched = next((c for c in curves if c.get("run") == "train_unet_v2" and c.get("event") == "schedule"), {})
    cost = {"device": env["device"], "torch": env["torch"], "text_encoder_minutes": round(text_seconds / 60, 2),
            "teacher_steps": done.get("steps"), "batch": size["batch"],
            "samples": (done.get("steps") or 0) * size["batch"],
            "teacher_loop_minutes": round(done.get("seconds", 0) / 60, 2), "steps_per_s": sched.get("steps_per_s"),
            "teacher_phase_minutes": round(unet_seconds / 60, 2), "scoring_minutes": round((time.time() - t3) / 60, 2),
            "whole_run_minutes": round((time.time() - t0) / 60, 2)}
    write(out, rows, cost, dict(size, **SCORE[mode]), args, text_table)


def score(weights: Path, clip_name: str, size: dict) -> list[tuple[str, dict]]:
    import numpy as np
    import torch

    from toyworld import evaluate, models, scenes
    from toyworld.train_unet_v2 import eval_prompts, load_text_encoder, score_prompts

    torch.set_num_threads(size["threads"])
    held = scenes.heldout_prompts()
    if size["per_category"]:
        held = [p for c in scenes.CATEGORIES for p in [q for q in held if q.category == c][:size["per_category"]]]
    vae = models.load_vae()
    rows = []
    with torch.no_grad():
        imgs = torch.from_numpy(np.stack([scenes.make_scene(p, 50_000 + k).image for p in held
                                          for k in range(size["images"])]))
        rec = vae.decode(vae.encode(imgs)).reshape(-1, 64, 64, 3).float().clamp(0, 1).cpu().numpy()
    pairs = [p for p in held for _ in range(size["images"])]
    rows.append(("real scenes through the toy VAE (latent ceiling), held-out",
                 evaluate.summarize(evaluate.score(r, p) for r, p in zip(rec, pairs, strict=True))))
    run = dict(images=size["images"], steps=size["steps"], cfg=4.0)

    def row(name, load, prompts):  # one failing row (a GPU path that breaks) leaves the others and the weights
        try:
            model, clip = load()
            rows.append((name, score_prompts(model, clip, vae, prompts, **run)))
        except Exception as e:  # noqa: BLE001
            print(f"row {name!r} failed: {e!r}", flush=True)
            rows.append((name, {"error": repr(e)[:300]}))
        print(rows[-1], flush=True)

    row("v1 teacher + v1 CLIP (shipped), held-out", lambda: (models.load_unet(), models.load_clip()), held)
    v2 = lambda: (models.load_unet_v2(weights), load_text_encoder(clip_name))  # noqa: E731
    label = {"v1": "v1 CLIP", "v2": "shipped v2 CLIP"}.get(clip_name, "v2 CLIP trained in this run")
    row(f"v2 teacher + {label}, held-out", v2, held)
    seen = eval_prompts(6 if not size["per_category"] else 1)
    row(f"v2 teacher + {label}, {len(seen)} training prompts", v2, seen)
    return rows


def write(out: Path, rows, cost: dict, size: dict, args, text_table: str = "", title: str = "device run",
          stem: str = "toy_v2_results") -> None:
    from toyworld import scenes

    cats = list(scenes.CATEGORIES)
    lines = [f"Toy-GenEval, KSampler euler/normal {size['steps']} steps, CFG 4, {size['images']} images per prompt "
             f"(seeds 1000 + prompt index){' — DRY RUN (CPU, tiny sizes)' if args.dry_run else ''}.", "",
             "| model | overall | " + " | ".join(c.replace("_", " ") for c in cats) + " |",
             "|---|---|" + "---|" * len(cats)]
    for name, s in rows:
        if "error" in s:
            lines.append(f"| {name} | failed: {s['error']} |" + " |" * len(cats))
            continue
        lines.append(f"| {name} | **{s['overall']:.3f}** | " + " | ".join(f"{s.get(c, float('nan')):.2f}" for c in cats)
                     + " |")
    lines += ["", "Training cost: " + ", ".join(f"{k} {v}" for k, v in cost.items()) + ".", ""]
    text = "\n".join(lines)
    print(text, flush=True)
    (out / f"{stem}.md").write_text(f"# Toy world v2 teacher ({title})\n\n" + text + "\n" + text_table)
    (out / f"{stem}.json").write_text(json.dumps({"rows": rows, "cost": cost, "size": size}, indent=1))


if __name__ == "__main__":
    main()
