"""What a toy teacher draws for each counting prompt (issue 15): the detected counts, training against held-out.

    ~/.cache/quickstep/venv/bin/python benchmarks/toy_counting.py [--weights W] [--arch v2]
                                                # writes benchmarks/results/toy_counting.md

The held-out split (toyworld/scenes.py, seed 5) leaves "two triangles" and "three circles" out, so in training each
of those nouns comes with one number only (triangles: three; circles: two) and only squares with both. A teacher
that reads the number from the noun draws three triangles for "two triangles"; this table shows whether it does.
KSampler euler/normal 25 steps, CFG 4 as in the toy-GenEval tables; the batch's noise from seed 1000 for every
prompt (the same noise under each prompt, so only the prompt differs).
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def count_rows(model, clip, vae, images: int) -> list[str]:
    import torch

    from quickstep.toyworld import evaluate, generate, scenes

    held = {p.text for p in scenes.heldout_prompts()}
    train = [p for p in scenes.train_prompts() if p.category == "counting"]
    seen = collections.defaultdict(set)  # plural noun -> the numbers training pairs it with
    for p in train:
        seen[p.objects[0].shape].add(scenes.NUMBERS[p.count])
    prompts = [p for p in scenes.all_prompts() if p.category == "counting"]
    lines = ["| prompt | split | numbers training pairs the noun with | detected counts of the shape | passed |",
             "|---|---|---|---|---|"]
    for p in prompts:
        with torch.no_grad():
            imgs = generate.sample(model, clip, vae, p.text, seed=1000, batch=images, steps=25, cfg=4.0)
        shape = p.objects[0].shape
        counts = collections.Counter(sum(d.shape == shape for d in evaluate.detect(im)) for im in imgs)
        hist = ", ".join(f"{n}: {counts[n]}" for n in sorted(counts))
        lines.append(f"| {p.text} | {'held-out' if p.text in held else 'training'} | "
                     f"{', '.join(sorted(seen[shape])) or '-'} | {hist} | {counts[p.count]}/{images} |")
        print(lines[-1], flush=True)
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=["v1", "v2"], default="v2", help="the teacher (v2: with its text encoder)")
    parser.add_argument("--weights", default="", help="teacher weights instead of the shipped ones")
    parser.add_argument("--images", type=int, default=16, help="images per prompt")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "toy_counting.md"))
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT / "tests"))
    import harness

    harness.setup_inprocess_host("current")
    harness.register_pack()
    from quickstep.toyworld import models

    model = models.load_teacher_unet(args.arch, Path(args.weights) if args.weights else None)
    rows = count_rows(model, models.load_text_encoder(args.arch), models.load_vae(), args.images)
    name = Path(args.weights).name if args.weights else f"shipped {args.arch}"
    text = "\n".join([f"# Toy teacher counting ({name}, {args.images} images per prompt)", "",
                      "Command: `~/.cache/quickstep/venv/bin/python benchmarks/toy_counting.py`"
                      + (f" --arch {args.arch}" if args.arch != "v2" else "") + ".", "", *rows, ""])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
