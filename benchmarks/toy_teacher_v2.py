"""Toy-GenEval of a v2 toy teacher (issue 15) on this CPU: the table benchmarks/device_toy_v2.py writes on a device.

    ~/.cache/quickstep/venv/bin/python benchmarks/toy_teacher_v2.py \\
        --weights /tmp/v2cpu/unet_v2.safetensors --curve toyworld/logs/train_unet_v2_cpu.jsonl
                                                # writes benchmarks/results/toy_teacher_v2.md / .json

Rows, every one on the same seeds (seed 1000 + prompt index, `--images` each), ComfyUI's KSampler path (euler /
normal, 25 steps, CFG 4): real held-out scenes through the toy VAE (the latent ceiling), the shipped v1 teacher with
the v1 CLIP, the v2 teacher with its text encoder on the 31 held-out prompts and on six training prompts per category.
The training cost (device, steps, batch, samples, minutes) is read from the run's curve (`--curve`, the jsonl that
`toyworld.train_unet --arch v2` writes to toyworld/logs/).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def training_cost(curve: Path) -> dict:
    """Device, steps, batch, samples and loop minutes of a `train_unet --arch v2` run, from its curve."""
    events = [json.loads(line) for line in curve.read_text().splitlines() if line.strip()]
    config = next((e for e in events if e.get("event") == "config"), {})
    done = [e for e in events if e.get("event") == "done"]
    logged = max((e for e in events if "step" in e and "loss" in e), key=lambda e: e["step"], default={})
    # a resumed run's curve holds each invocation's lines; a stopped one ends on a logged step, not on "done"
    last = done[-1] if done and done[-1].get("steps", 0) >= logged.get("step", 0) else logged
    steps = last.get("steps", last.get("step", 0))
    rate = next((e for e in events if e.get("event") == "schedule"), {})
    return {"device": config.get("device", "?"), "threads": config.get("threads"), "teacher_steps": steps,
            "batch": config.get("batch"), "samples": steps * (config.get("batch") or 0),
            "scenes": config.get("data"), "lr": config.get("lr"),
            "teacher_loop_minutes": round(last.get("seconds", 0) / 60, 1),
            "steps_per_s": rate.get("steps_per_s"), "cosine_schedule_steps": last.get("total", rate.get("steps")),
            "finished": last is not logged}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=str(ROOT / "toyworld" / "weights" / "unet_v2.safetensors"),
                        help="the v2 teacher's EMA weights (train_unet --arch v2 writes them to its --out)")
    parser.add_argument("--clip", default="v2", help="its text encoder: v2 (shipped), v1, or a CLIPModel directory")
    parser.add_argument("--curve", default="", help="the training run's curve (toyworld/logs/<run>.jsonl): cost row")
    parser.add_argument("--images", type=int, default=8, help="images per prompt")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder of toy_teacher_v2.md")
    args = parser.parse_args(argv)
    from host.inprocess import import_host
    from host.locate import find_host

    import_host(find_host("current"), cpu=True)
    from benchmarks import device_toy_v2

    size = dict(images=args.images, steps=25, per_category=0, threads=args.threads)
    rows = device_toy_v2.score(Path(args.weights), args.clip, size)
    cost = training_cost(Path(args.curve)) if args.curve else {}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device_toy_v2.write(out, rows, cost, size, SimpleNamespace(dry_run=False), title="CPU",
                        stem="toy_teacher_v2")


if __name__ == "__main__":
    main()
