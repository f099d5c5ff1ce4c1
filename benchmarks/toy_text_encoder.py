"""Does the toy text encoder bind? The v1 toy CLIP (shipped, the v1 teacher's) and the v2 one side by side.

    ~/.cache/quickstep/venv/bin/python benchmarks/toy_text_encoder.py   # writes benchmarks/results/toy_text_encoder.md

For every hard-negative caption pair of the whole grammar (toyworld/train_text_v2.pairs: "A left of B" vs "A right
of B", objects swapped, "two" vs "three", swapped colours) the mean and the largest cosine between the two captions'
pooled projected text features (what retrieval and the CLIP reward compare), and the same for the teacher's input
(CLIPTextEncode's 77 x 32 context through ComfyUI's SD1 CLIP, flattened). Paraphrases ("A left of B" vs "B right of
A") are the same statement and should stay close. Retrieval: scenes of the held-out prompts (4 each) against every
caption of the grammar, top-1 exact caption (the issue's figure) and top-1 statement (a paraphrase counts). Margin:
for each flipped-relation pair and each of 4 scenes of the first caption, the cosine of the image with its own caption
minus with the flipped one; the fraction of such scenes with a positive margin. `--v2 DIR` scores another v2 directory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import harness  # noqa: E402

harness.register_pack()


@torch.no_grad()
def figures(hf_dir: Path, comfy_clip) -> dict:
    from transformers import CLIPModel

    from toyworld import scenes
    from toyworld.train_clip import preprocess, tokenize
    from toyworld.train_text_v2 import evaluate_encoder, image_features, pairs, text_features

    model = CLIPModel.from_pretrained(str(hf_dir)).float().eval()
    out = {"pooled": {}, "context": {}}
    allp = scenes.all_prompts()
    at = {p: i for i, p in enumerate(allp)}
    pooled = F.normalize(text_features(model, tokenize([p.text for p in allp]))[0], dim=-1)
    context = torch.cat([comfy_clip.encode_from_tokens(comfy_clip.tokenize(p.text)) for p in allp]).float()
    context = F.normalize(context.flatten(1), dim=-1)
    train = set(scenes.train_prompts())
    out["split"] = {}
    for name, prs in pairs().items():
        for kind, feats in (("pooled", pooled), ("context", context)):
            cos = [float(feats[at[a]] @ feats[at[b]]) for a, b in prs]
            out[kind][name] = (float(np.mean(cos)), float(np.max(cos)), len(cos))
        seen = [float(pooled[at[a]] @ pooled[at[b]]) for a, b in prs if a in train and b in train]
        new = [float(pooled[at[a]] @ pooled[at[b]]) for a, b in prs if not (a in train and b in train)]
        out["split"][name] = (float(np.mean(seen)) if seen else float("nan"), len(seen),
                              float(np.mean(new)) if new else float("nan"), len(new))
    ev = evaluate_encoder(model)
    out["heldout_top1"], out["heldout_top1_statement"] = ev["heldout_top1"], ev["heldout_top1_statement"]
    flips = pairs()["flipped relation"]
    imgs = np.stack([np.round(scenes.make_scene(a, 20_000 + k).image * 255).astype(np.uint8)
                     for a, _ in flips for k in range(4)])
    img = F.normalize(image_features(model, preprocess(imgs)), dim=-1)
    own = torch.stack([pooled[at[a]] for a, _ in flips for _ in range(4)])
    flipped = torch.stack([pooled[at[b]] for _, b in flips for _ in range(4)])
    margin = (img * own).sum(-1) - (img * flipped).sum(-1)
    out["flip_margin_positive"] = float((margin > 0).float().mean())
    out["flip_margin_mean"] = float(margin.mean())
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--v2", default="", help="a v2 CLIPModel directory (default: toyworld/weights/clip_v2)")
    parser.add_argument("--label", default="v2 (clip_v2)", help="the v2 column's name")
    parser.add_argument("--note", default="", help="a line under the command (e.g. where the v2 weights came from)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "toy_text_encoder.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    harness.setup_inprocess_host("current")
    from toyworld import models

    v2_dir = Path(args.v2) if args.v2 else models.clip_v2_dir()
    rows = {"v1 (shipped toy CLIP)": figures(models.clip_dir(), models.load_clip()),
            args.label: figures(v2_dir, models.load_clip_v2(v2_dir))}
    names = list(next(iter(rows.values()))["pooled"])
    lines = ["Text-feature cosine between hard-negative captions, mean over every pair of the grammar (largest in "
             "brackets); lower = better separated, except the paraphrase row (same statement: higher = better).", "",
             "| caption pair (pairs) | " + " | ".join(f"{r}: pooled | {r}: teacher context" for r in rows) + " |",
             "|---|" + "---|---|" * len(rows)]
    for name in names:
        n = next(iter(rows.values()))["pooled"][name][2]
        cells = []
        for r in rows.values():
            for kind in ("pooled", "context"):
                mean, mx, _ = r[kind][name]
                cells.append(f"{mean:.3f} ({mx:.3f})")
        lines.append(f"| {name} ({n}) | " + " | ".join(cells) + " |")
    lines += ["", "The pooled cosine split by whether both captions are training captions (the encoder saw them) or "
              "one is held out (it never did: what the teacher meets on held-out prompts).", "",
              "| caption pair | " + " | ".join(f"{r}: both trained | {r}: one held out" for r in rows) + " |",
              "|---|" + "---|---|" * len(rows)]
    for name in names:
        cells = []
        for r in rows.values():
            seen, n_seen, new, n_new = r["split"][name]
            cells += [f"{seen:.3f} ({n_seen})", f"{new:.3f} ({n_new})"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| encoder | held-out top-1 (exact caption) | held-out top-1 (same statement) | scenes whose own "
              "relation beats the flipped one | mean margin |", "|---|---|---|---|---|"]
    for r, f in rows.items():
        lines.append(f"| {r} | {f['heldout_top1']:.3f} | {f['heldout_top1_statement']:.3f} | "
                     f"{f['flip_margin_positive']:.3f} | {f['flip_margin_mean']:+.3f} |")
    table = "\n".join(lines) + "\n"
    print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    given = list(argv if argv is not None else sys.argv[1:])
    if "--note" in given:  # the note goes under the command, not in it
        del given[given.index("--note"):given.index("--note") + 2]
    command = " ".join(["benchmarks/toy_text_encoder.py", *(f"'{a}'" if " " in a else a for a in given)])
    Path(args.out).write_text("# Toy text encoder: v1 vs v2\n\nCommand: `~/.cache/quickstep/venv/bin/python "
                              f"{command}` (CPU, 1 thread; held-out retrieval: 31 held-out prompts x 4 scenes "
                              "against all 120 captions).\n\n" + (args.note + "\n\n" if args.note else "") + table)


if __name__ == "__main__":
    main()
