"""LADD: quality of the shipped toy student, and the cost of a LADD step against core's TrainLoraNode, in one run.

    ~/.cache/quickstep/venv/bin/python benchmarks/ladd_bench.py     # writes benchmarks/results/ladd.md (~20 min on a CPU; quality ~16)

Quality: toy-GenEval (toyworld/evaluate.py, an analytic detector, never a reward) on the held-out prompts, `--images`
fixed seeds each: the student (toyworld/weights/student_lora.safetensors through core's LoRA loader) at 1, 2 and 4
Turbo steps with CFG 1, against the teacher at 25 steps euler/normal with CFG 4 (what its dataset was sampled with)
and the teacher itself at 1, 2 and 4 Turbo steps with CFG 4. Ratios are to the teacher's 25-step score.

Cost: the toy UNet (1.7M parameters, 16x16x4 latents), batch `--batch`, LoRA rank 16, fp32, gradient checkpointing
on, one torch thread, each method in its own fresh process: seconds per step (the difference of a long and a short
run, so set-up cancels) and the peak resident memory above the process's footprint before training (Linux VmHWM
after clearing it), with the modules either method imports loaded before that footprint is read in both; and, in a
third run of `--short` steps, the peak of live tensor storages (activations, LoRA, optimiser states, copies of
weights; no allocator caches or library pages). Both peaks span the whole run, so the optimiser states (allocated at
the first update) count for both methods. A LADD step is one discriminator update (two truncated teacher passes without grad) plus one
generator update (student and truncated teacher forward and backward); a TrainLoraNode step is one denoising forward
and backward.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks")]

from device_real_size import counting_rows  # noqa: E402

import harness  # noqa: E402

harness.register_pack()

RANK = 16


def _rss(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _load() -> str:
    import os

    return "/".join(f"{v:.1f}" for v in os.getloadavg()) + f" on {os.cpu_count()} CPUs"


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)


class _LiveTensors:
    """Peak bytes of live tensor storages made by torch ops while active (a dispatch mode sees every op, forward and
    backward; each new storage is counted until it is freed). Independent of the C allocator's caching and of code
    and library pages, which RSS counts; slow, so it runs in a child of its own, not in a timed one."""

    def __init__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        tracker = self
        self.live = self.peak = 0
        self.sizes: dict[int, int] = {}

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                for t in out if isinstance(out, (tuple, list)) else (out,):
                    tracker._add(t)
                return out

        self.mode = Mode()

    def _add(self, t) -> None:
        import weakref

        import torch

        if not isinstance(t, torch.Tensor) or t.device.type == "meta":
            return
        storage = t.untyped_storage()
        key, size = storage.data_ptr(), storage.nbytes()
        if size == 0 or key in self.sizes:
            return
        self.sizes[key] = size
        self.live += size
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._free, key, size)

    def _free(self, key: int, size: int) -> None:
        if self.sizes.get(key) == size:
            del self.sizes[key]
            self.live -= size

    def __enter__(self):
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self.mode.__exit__(*exc)


def _measured(track: bool):
    from contextlib import nullcontext

    return _LiveTensors() if track else nullcontext()


def _toy_batch(batch: int, seed: int = 0):
    """Toy-teacher-shaped training data: latents and CLIP conditioning of toy prompts."""
    import torch

    from quickstep.toyworld import models, scenes
    from quickstep.toyworld.generate import encode

    clip = models.load_clip()
    prompts = [p.text for p in scenes.train_prompts()][:batch]
    conds = [encode(clip, p) for p in prompts]
    cond = torch.cat([c[0][0] for c in conds])
    pooled = torch.cat([c[0][1]["pooled_output"] for c in conds])
    latents = torch.randn(batch, 4, models.LATENT, models.LATENT, generator=torch.Generator().manual_seed(seed))
    return latents, cond, pooled


def _import_both() -> None:
    """Import what either method uses before the baseline is read, in both children alike: core's trainer module
    brings in ComfyUI's samplers (and scipy) at import, LADD brings them in lazily on its first step; counted in one
    and not the other, those ~37 MB of modules would be charged to LADD."""
    import comfy.samplers  # noqa: F401
    import comfy_extras.nodes_train  # noqa: F401
    import torch.utils.checkpoint  # noqa: F401

    from quickstep.distill import dataset, lora, state, step  # noqa: F401
    from quickstep.samplers import differentiable, turbo  # noqa: F401


def child_ladd(steps: int, batch: int, track: bool = False) -> dict:
    import torch

    from quickstep.distill import dataset as ds
    from quickstep.distill import lora, state, step
    from quickstep.toyworld import models

    with torch.inference_mode(), counting_rows() as rows:
        model = models.load_unet()
        latents, cond, pooled = _toy_batch(batch)
        data = ds.Dataset(latents, cond, pooled, [""] * batch, {}, "memory")
        cfg = step.Config(rank=RANK, bf16=False, gradient_checkpointing=True)
        params = lora.init_params(lora.target_modules(model), RANK, torch.Generator().manual_seed(0))
        run = state.State(model=model, config=cfg, identity={}, lora=params)
        _import_both()
        base = _rss("VmRSS")
        _reset_peak()
        t0 = time.perf_counter()
        with _measured(track) as tracker:
            trainer = run.trainer()
            for _ in range(steps):
                step.train_step(trainer, data.sample_batch(batch, trainer.generator))
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_bytes": _rss("VmHWM") - base, "rows_per_step": sum(rows) / steps,
            "tensor_peak_bytes": tracker.peak if track else None}


def child_core(steps: int, batch: int, track: bool = False) -> dict:
    import torch
    from comfy_extras.nodes_train import TrainLoraNode

    from quickstep.toyworld import models

    with torch.inference_mode(), counting_rows() as rows:
        model = models.load_unet()
        latents, cond, pooled = _toy_batch(batch)
        positive = [[[cond[i:i + 1], {"pooled_output": pooled[i:i + 1]}]] for i in range(batch)]
        _import_both()
        base = _rss("VmRSS")
        _reset_peak()
        t0 = time.perf_counter()
        with _measured(track) as tracker:
            TrainLoraNode.execute(model=[model], latents=[{"samples": latents}], positive=positive,
                                  batch_size=[batch], steps=[steps], grad_accumulation_steps=[1], learning_rate=[1e-4],
                                  rank=[RANK],
                                  optimizer=["AdamW"], loss_function=["MSE"], seed=[0], training_dtype=["fp32"],
                                  lora_dtype=["fp32"], quantized_backward=[False], algorithm=["LoRA"],
                                  gradient_checkpointing=[True], checkpoint_depth=[1], offloading=[False],
                                  existing_lora=["[None]"], bucket_mode=[False], bypass_mode=[False])
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_bytes": _rss("VmHWM") - base, "rows_per_step": sum(rows) / steps,
            "tensor_peak_bytes": tracker.peak if track else None}


def run_child(method: str, steps: int, batch: int, track: bool = False) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", method, "--steps", str(steps), "--batch", str(batch),
                          *(["--track-tensors"] if track else [])], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def cost_rows(batches: list[int], short: int, long: int) -> list[str]:
    lines = ["| batch | method | seconds / step | model rows / step | peak RSS above start (MB) | "
             "peak live tensors (MB) |", "|---|---|---|---|---|---|"]
    for batch in batches:
        res = {}
        for method in ("core", "ladd"):
            a, b = run_child(method, short, batch), run_child(method, long, batch)
            tracked = run_child(method, short, batch, track=True)
            res[method] = {"step": (b["seconds"] - a["seconds"]) / (long - short), "rows": b["rows_per_step"],
                           "peak": max(a["peak_bytes"], b["peak_bytes"]), "tensors": tracked["tensor_peak_bytes"]}
            print(batch, method, res[method], flush=True)
        core, ladd = res["core"], res["ladd"]
        mb = lambda x: f"{x / 2**20:.1f}"  # noqa: E731
        lines += [f"| {batch} | core TrainLoraNode (LoRA rank {RANK}, MSE) | {core['step']:.3f} | {core['rows']:.0f} | "
                  f"{mb(core['peak'])} | {mb(core['tensors'])} |",
                  f"| {batch} | Quickstep LADD (LoRA rank {RANK}, D + G step) | {ladd['step']:.3f} | "
                  f"{ladd['rows']:.0f} | {mb(ladd['peak'])} | {mb(ladd['tensors'])} |",
                  f"| {batch} | **ratio LADD / core** | **{ladd['step'] / core['step']:.2f}x** (target <= 3.5x) | | "
                  f"**{ladd['peak'] / max(core['peak'], 1):.2f}x** (target <= 1.3x) | "
                  f"**{ladd['tensors'] / max(core['tensors'], 1):.2f}x** |"]
    return lines


def _toy_models(arch: str, teacher_file: str, student_file: str):
    """(teacher, student, clip, vae) of the toy world; v2: the v2 teacher with its text encoder. The files may come
    from training runs' --out, not shipped yet."""
    from quickstep.toyworld import models

    teacher_path = Path(teacher_file) if teacher_file else None
    student = models.load_student(Path(student_file) if student_file else None, arch, teacher_path)
    return (models.load_teacher_unet(arch, teacher_path), student, models.load_text_encoder(arch),
            models.load_vae())


def _heldout_score(model, clip, vae, images: int, steps: int, cfg: float, schedule: str, base: int = 1000) -> dict:
    """Toy-GenEval summary over the held-out prompts, `images` each from seed base + prompt index."""
    import torch

    from quickstep.toyworld import evaluate, generate, scenes

    results = []
    with torch.no_grad():
        for i, p in enumerate(scenes.heldout_prompts()):
            imgs = generate.sample(model, clip, vae, p.text, seed=base + i, batch=images, steps=steps, cfg=cfg,
                                   schedule=schedule)
            results += [evaluate.score(img, p) for img in imgs]
    return evaluate.summarize(results)


def quality_rows(images: int, arch: str = "v1", teacher_file: str = "", student_file: str = "") -> list[str]:
    from quickstep.toyworld import scenes

    teacher, student, clip, vae = _toy_models(arch, teacher_file, student_file)
    rows = []

    def row(name, model, steps, cfg, schedule):
        t0 = time.time()
        s = _heldout_score(model, clip, vae, images, steps, cfg, schedule)
        rows.append((name, steps, cfg, s, time.time() - t0))
        print(f"{name} {steps}: {s['overall']:.3f}", flush=True)

    row("teacher, euler/normal", teacher, 25, 4.0, "core")
    for steps in (1, 2, 4):
        row("teacher, Turbo schedule", teacher, steps, 4.0, "turbo")
    for steps in (1, 2, 4):
        row("**LADD student**, Turbo schedule", student, steps, 1.0, "turbo")
    ref = rows[0][3]["overall"]
    cats = list(scenes.CATEGORIES)
    lines = ["| model | steps | CFG | overall | vs teacher 25 | " + " | ".join(c.replace("_", " ") for c in cats)
             + " | seconds |", "|---|---|---|---|---|" + "---|" * len(cats) + "---|"]
    for name, steps, cfg, s, secs in rows:
        lines.append(f"| {name} | {steps} | {cfg:g} | **{s['overall']:.3f}** | {s['overall'] / ref:.2f}x | "
                     + " | ".join(f"{s[c]:.2f}" for c in cats) + f" | {secs:.0f} |")
    return lines


def spread_rows(images: int, sets: int, arch: str = "v1", teacher_file: str = "", student_file: str = "") -> list[str]:
    """The student at 1, 2 and 4 steps on `sets` disjoint seed sets of `images` each (seed base + prompt index, bases
    1000, 7000, ...): how far one set's overall score is from another's."""
    _, student, clip, vae = _toy_models(arch, teacher_file, student_file)
    bases = [1000 + 6000 * k for k in range(sets)]
    lines = ["| student | steps | " + " | ".join(f"seeds {b}+i" for b in bases) + " | mean |",
             "|---|---|" + "---|" * len(bases) + "---|"]
    for steps in (1, 2, 4):
        scores = [_heldout_score(student, clip, vae, images, steps, 1.0, "turbo", base)["overall"] for base in bases]
        lines.append(f"| {Path(student_file).name if student_file else 'shipped'} | {steps} | "
                     + " | ".join(f"{v:.3f}" for v in scores) + f" | **{sum(scores) / len(scores):.3f}** |")
        print(lines[-1], flush=True)
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=32, help="images per held-out prompt (at 8, one seed set's "
                        "1-step overall score spread by +-0.07 from set to set: benchmarks/results/ladd_spread.md)")
    parser.add_argument("--batches", default="1,8", help="batch sizes of the cost rows")
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--short", type=int, default=5, help="steps of the short cost run")
    parser.add_argument("--long", type=int, default=45, help="steps of the long cost run")
    parser.add_argument("--skip", choices=["quality", "cost"], default=None)
    parser.add_argument("--spread", type=int, default=0, metavar="SETS", help="instead: the student's scores on SETS "
                        "seed sets of --images each (e.g. --spread 4 --images 8), to see one set's noise")
    parser.add_argument("--child", choices=["core", "ladd"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--track-tensors", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--teacher", choices=["v1", "v2"], default="v1", help="quality rows: the toy teacher (v2: "
                        "the v2 teacher with its text encoder and student_v2_lora)")
    parser.add_argument("--teacher-file", default="", help="quality rows: teacher weights instead of the shipped ones")
    parser.add_argument("--student-file", default="", help="quality rows: student LoRA instead of the shipped one")
    parser.add_argument("--out", default="", help="default benchmarks/results/ladd.md (with --spread ladd_spread.md)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    harness.setup_inprocess_host("current")
    if args.child:
        print(json.dumps((child_core if args.child == "core" else child_ladd)(args.steps, args.batch, args.track_tensors)))
        return
    args.out = args.out or str(ROOT / "benchmarks" / "results" / ("ladd_spread.md" if args.spread else "ladd.md"))
    if args.spread:
        from quickstep.toyworld import scenes

        text = "\n".join([f"# LADD student: {args.spread} seed sets x {args.images} images, "
                          f"{len(scenes.heldout_prompts())} held-out prompts", "",
                          *spread_rows(args.images, args.spread, args.teacher, args.teacher_file, args.student_file),
                          ""])
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        return
    command = " ".join(["~/.cache/quickstep/venv/bin/python benchmarks/ladd_bench.py",
                        *(sys.argv[1:] if argv is None else argv)])
    sections = ["# LADD", "", f"Command: `{command}` (CPU, one torch thread).", ""]
    if args.skip != "quality":
        from quickstep.toyworld import scenes

        sections += [f"## Toy student quality ({len(scenes.heldout_prompts())} held-out prompts x {args.images} "
                     f"images{', v2 teacher' if args.teacher == 'v2' else ''})", "",
                     *quality_rows(args.images, args.teacher, args.teacher_file, args.student_file), ""]
    if args.skip != "cost":
        sections += ["## Step cost on the toy UNet (16x16x4 latents, fp32, checkpointing on)", "",
                     *cost_rows([int(b) for b in args.batches.split(",")], args.short, args.long), "",
                     "Model rows / step: the batch rows fed to the diffusion model per training step. Core's "
                     "TrainLoraNode sets one positive cond per image of the batch, and ComfyUI runs every cond over "
                     "the whole batch, so its rows grow with batch squared; LADD passes the batch's conditioning as "
                     "one batched cond (student B, discriminator 2B, generator B rows). Peak RSS counts what the process holds (with "
                     "allocator caches and code pages; a few MB from run to run); peak live tensors counts only "
                     "tensor storages. Both methods checkpoint activations (core: the whole diffusion model as one "
                     "segment, its depth-1 default; LADD: each res/attention block). Timings come from whatever "
                     f"machine runs this (here load average {_load()} at the end); on a shared machine they vary "
                     "from run to run, the rows and the ratios' direction do not.", ""]
    text = "\n".join(sections)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
