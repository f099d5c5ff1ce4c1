"""Real-size GPU figures in one prepared device call: LADD and core TrainLoraNode steps on SD1.5- and SDXL-size UNets
(issue 16), ReNO at SD-Turbo and SDXL-Turbo size against its floor (issue 10), the Turbo sampler against core.

On a device (an H200 session; one `run` call of about 8 minutes):

    # here, in the checkout the session runs from, once per session (writes the ignored .device_carry/, ~9 MiB):
    ~/.cache/quickstep/venv/bin/python benchmarks/device_real_size.py --stage .device_carry
    # then the device tool's run, with carry [".device_carry"] and timeout_s 540:
    set -o pipefail; PYTHONUNBUFFERED=1 python3 benchmarks/device_real_size.py --size real --device cuda \
        --host-dir .device_carry --budget-s 420 --out $OUT/device_real_size.md 2>&1 | tee $OUT/device_real_size.log
    # afterwards, here: copy the returned device_real_size.md to benchmarks/results/ and commit it

The device cannot reach GitHub and its python3 is the image's (torch 2.11 + CUDA 13, transformers, safetensors, no
ComfyUI, no av/comfy-kitchen/comfy-aimdo/torchsde), so `--stage` copies the pinned host's Python files and the few
packages ComfyUI imports unconditionally into an ignored folder that the call carries (benchmarks/device_host.py
says what and why; about 9 MiB plus the 17 MiB tree, of 64 MiB). Nothing of it is committed.

Dry run here (every code path, tiny models, about a minute):

    ~/.cache/quickstep/venv/bin/python benchmarks/device_real_size.py --size tiny --device cpu --out /tmp/dry.md

What it measures (random weights at the released architectures, built with ComfyUI's own classes:
comfy.supported_models config -> model_base -> ModelPatcher, comfy.sd.VAE from the SD KL-f8 config; bf16 on CUDA,
gradient checkpointing as the nodes do it):

* ladd: per UNet (SD1.5, SDXL) and resolution (512, 1024 px), LoRA rank 32, batch 2: seconds per step and peak GPU
  memory of one Quickstep LADD step (distill/step.py, one D and one G update) and of core TrainLoraNode (bf16,
  AdamW, MSE, gradient checkpointing) on the same UNet, side by side; FLOPs per step (FlopCounterMode over one
  real step, checkpoint recomputation included), the time those FLOPs take at the bf16 matmul rate measured at the
  start (the floor) and how far above it each method runs; weight bytes against peak memory. Target: SDXL 1024 px
  LADD <= 24 GB.
* reno: SD-Turbo (SD2.1 UNet) and SDXL-Turbo (SDXL UNet) at 512 px, batch 1, the SD VAE decoder, the four real-size
  rewards of benchmarks/reward_bench.py (CLIP, PickScore and HPS ViT-H-14, ImageReward BLIP): seconds per ReNO
  iteration (samplers/reno.py, what QuickstepReNO runs), seconds for the run and peak GB, without and with
  checkpointing all three parts; the floor (one forward + backward of generator, VAE decoder and each reward, timed
  alone in the same run, as benchmarks/reno_bench.py does on the toy world) and ReNO / floor; FLOPs per iteration.
  Targets (issue 10, H100/H200): SD-Turbo <= 8 s for 50 iterations and <= 10 GB, SDXL-Turbo <= 16 GB.
* turbo: the Quickstep Turbo KSampler against bare model calls and core SamplerCustom + SDTurboScheduler +
  euler_ancestral on the SD1.5 UNet at 512 px, 1 and 4 steps (benchmarks/turbo_overhead.py at real size).

Estimated H200 time, from FLOPs (forward FLOPs per row counted here with FlopCounterMode on the meta device: SD1.5 /
SD2.1 UNet 0.80 TFLOP at 512 px and 4.67 at 1024 px, SDXL 1.59 and 6.76, SD VAE decoder 2.51 at 512 px; ViT-H/14 at
224 px ~0.33, 2 x 632 M parameters x 257 tokens), at ~300 TFLOP/s achieved (40 % of the ~790 measured for a large
bf16 matmul on these machines): a LADD step is ~10 forward-equivalents of its 2 rows (student forward, recompute and
backward; the truncated teacher on 4 rows; teacher forward, recompute and backward), a core step ~4 of its 4 rows,
so SDXL 1024 px ~135 TFLOP, ~0.45 s per step, SD1.5 512 px ~16 TFLOP; 9 steps per method and config plus set-up
(a 2.6 B-parameter random init on the GPU, moves, loads: a few s) gives ~10 s per run, ~1.5 min for the 8 LADD runs.
A ReNO iteration is ~13 (SD-Turbo) to ~16 (SDXL-Turbo) TFLOP (generator 2.4 / 4.8, VAE decoder 7.5, rewards ~3.5
forward + backward), ~0.05 s: warm-up, two 50-iteration runs and the floor (6 parts x 12 passes) ~15 s per model,
plus ~15 s to build the rewards; turbo ~10 s; start-up (imports, CUDA, the matmul probe) ~30 s. About 3 minutes in
all: `--budget-s 420` leaves twice that, timeout_s 540 leaves two more minutes for a slow start, and every unit checks
the time left first and is skipped (said so in the report) rather than started when it would not fit. The report is
rewritten after every row, so a kill still leaves what was measured. Each unit runs in its own try/except: an OOM or
error is a row of the report and the run goes on.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

import device_host  # noqa: E402

SECTIONS = ("ladd", "reno", "turbo")
GB = 1e9

# ComfyUI's UNet configs of the released models (comfy/model_detection.py's SD15, SD21 and SDXL entries)
_UNET_BASE = {"use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
              "legacy": False, "in_channels": 4, "model_channels": 320, "use_temporal_attention": False,
              "use_temporal_resblock": False}
UNETS = {
    "sd15": dict(_UNET_BASE, adm_in_channels=None, num_res_blocks=[2, 2, 2, 2], channel_mult=[1, 2, 4, 4],
                 transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0], transformer_depth_middle=1,
                 transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], use_linear_in_transformer=False,
                 context_dim=768, num_heads=8),
    "sd21": dict(_UNET_BASE, adm_in_channels=None, num_res_blocks=[2, 2, 2, 2], channel_mult=[1, 2, 4, 4],
                 transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0], transformer_depth_middle=1,
                 transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], use_linear_in_transformer=True,
                 context_dim=1024, num_head_channels=64),
    "sdxl": dict(_UNET_BASE, num_classes="sequential", adm_in_channels=2816, num_res_blocks=[2, 2, 2],
                 channel_mult=[1, 2, 4], transformer_depth=[0, 0, 2, 2, 10, 10], transformer_depth_middle=10,
                 transformer_depth_output=[0, 0, 0, 2, 2, 2, 10, 10, 10], use_linear_in_transformer=True,
                 context_dim=2048, num_head_channels=64),
}
UNET_NAMES = {"sd15": "SD1.5", "sd21": "SD2.1", "sdxl": "SDXL"}
TINY_FAMILY = {"sd15": "sd1", "sd21": "sd1", "sdxl": "sdxl"}  # tests/comfy_testpack/tiny_models.py
SD_VAE = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
          "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
TINY_PX = {512: 64, 1024: 128}  # the tiny dry run keeps the shape of the plan at CPU-friendly sizes
RENO_MODELS = (("SD-Turbo", "sd21"), ("SDXL-Turbo", "sdxl"))
REWARDS = ("clip", "pickscore", "hps", "imagereward")
# rough seconds a unit needs on an H200 (the estimate in the docstring, with set-up): a unit starts only if the
# budget has this much left
NEED_S = {"ladd": {("sd15", 512): 25, ("sd15", 1024): 45, ("sdxl", 512): 35, ("sdxl", 1024): 60}, "reno": 60,
          "turbo": 20}


# --------------------------------------------------------------------------------------------------- run context

@dataclass
class Budget:
    seconds: float
    start: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.start)

    def elapsed(self) -> float:
        return time.monotonic() - self.start


class Report:
    """The markdown report, rewritten (atomically) after every row so a killed run leaves what it measured."""

    def __init__(self, path: Path):
        self.path = path
        self.header: list[str] = []
        self.sections: dict[str, list[str]] = {}

    def add(self, section: str, *lines: str) -> None:
        self.sections.setdefault(section, []).extend(lines)
        self.write()

    def text(self) -> str:
        parts = ["\n".join(self.header)]
        parts += ["\n".join(lines) for lines in self.sections.values()]
        return "\n\n".join(parts) + "\n"

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(self.text())
        os.replace(tmp, self.path)


@dataclass
class Ctx:
    args: argparse.Namespace
    device: object  # torch.device
    budget: Budget
    report: Report
    ceiling: float = 0.0  # measured matmul FLOP/s (the floor's rate)
    real: bool = True

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def dtype(self):
        import torch

        return torch.bfloat16 if self.cuda else torch.float32

    def px(self, px: int) -> int:
        if self.args.px:
            return self.args.px * px // 512
        return px if self.real else TINY_PX[px]

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def now(self) -> float:
        self.sync()
        return time.perf_counter()

    def reset_peak(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def peak(self) -> float | None:
        if not self.cuda:
            return None
        import torch

        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()


def gb(value) -> str:
    return "n/a (CPU)" if value is None else f"{value / GB:.3g}"


def cleanup(ctx: Ctx, unload: bool = True) -> None:
    import comfy.model_management as mm
    import torch

    if unload:
        mm.unload_all_models()
    gc.collect()
    mm.soft_empty_cache()
    if ctx.cuda:
        torch.cuda.empty_cache()


def is_oom(error: BaseException) -> bool:
    import torch

    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def failure(ctx: Ctx, error: BaseException) -> str:
    """A report cell for a unit that failed: OOM with the peak reached, or the error's last line."""
    traceback.print_exception(error)
    if is_oom(error):
        return f"OOM (peak before failing {gb(ctx.peak())} GB)"
    return f"error: {type(error).__name__}: {str(error).strip().splitlines()[-1][:160] if str(error).strip() else ''}"


@contextmanager
def counting_rows():
    """Count the batch rows of every diffusion-model call (core's trainer runs each image's cond over the batch)."""
    import comfy.model_base

    rows: list[int] = []
    original = comfy.model_base.BaseModel._apply_model

    def counted(self, x, *args, **kwargs):
        rows.append(int(x.shape[0]))
        return original(self, x, *args, **kwargs)

    comfy.model_base.BaseModel._apply_model = counted
    try:
        yield rows
    finally:
        comfy.model_base.BaseModel._apply_model = original


def flop_counter():
    from torch.utils.flop_counter import FlopCounterMode

    return FlopCounterMode(display=False)


# --------------------------------------------------------------------------------------------------- models

def init_(module, seed: int, device) -> None:
    """N(0, 0.02) matrices, zero biases, unit scales (tiny_models.init_weights_), drawn on `device` (fast on a GPU)."""
    import torch

    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=gen, device=device, dtype=torch.float32) * 0.02)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.fill_(1.0)


def build_unet(ctx: Ctx, arch: str, seed: int = 0):
    """A ModelPatcher around a random-weight UNet of `arch` (real size, or the tiny test model of its family),
    weights on the CPU (a MODEL not yet loaded) and loaded by ComfyUI's memory manager when used."""
    import comfy.model_base
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models

    if not ctx.real:
        from comfy_testpack import tiny_models

        return tiny_models.build_model(TINY_FAMILY[arch], seed)
    config_class = {"sd15": comfy.supported_models.SD15, "sd21": comfy.supported_models.SD20,
                    "sdxl": comfy.supported_models.SDXL}[arch]

    def build(seed=seed, disable_dynamic=False):
        config = config_class(dict(UNETS[arch]))
        if arch == "sd21":  # SD-Turbo predicts eps (SD20 would read that off the weights)
            config.model_type = lambda state_dict, prefix="": comfy.model_base.ModelType.EPS
        config.set_inference_dtype(ctx.dtype, None)
        model = config.get_model({}, device=ctx.device)  # built on the GPU: random init of 2.6 B weights in ~1 s
        init_(model.diffusion_model, seed, ctx.device)
        model.to(mm.unet_offload_device())
        model.device = mm.unet_offload_device()  # where the weights are: what ComfyUI's loader would say
        patcher = comfy.model_patcher.ModelPatcher(model, ctx.device, mm.unet_offload_device())
        # core's TrainLoraNode clones with force_deepcopy, which rebuilds the model as a loader would
        patcher.cached_patcher_init = (build, (seed,))
        return patcher

    return build()


def build_vae(ctx: Ctx):
    import logging

    import comfy.sd

    if not ctx.real:
        from comfy_testpack import tiny_models

        return tiny_models.build_vae(4)
    logger = logging.getLogger()
    level, _ = logger.level, logger.setLevel(logging.ERROR)  # ComfyUI warns about every key of the empty state dict
    try:
        vae = comfy.sd.VAE(sd={}, config={"params": {"embed_dim": 4, "ddconfig": SD_VAE}})
    finally:
        logger.setLevel(level)
    init_(vae.first_stage_model, 2, "cpu")
    return vae


def build_rewards(ctx: Ctx) -> tuple[list, str]:
    """The four ReNO rewards: real architectures with random weights (reward_bench.real_rewards), or the tiny ones.
    A kind that fails to build is left out and named in the returned note (ReNO runs with the others)."""
    import reward_bench

    if ctx.real:
        source = reward_bench.real_rewards(device=ctx.device, dtype=ctx.dtype)
    else:
        source = reward_bench.tiny_rewards(device=ctx.device, dtype="fp32")
    rewards, note = [], ""
    while len(rewards) < len(REWARDS):  # a generator: kinds after the four are never built
        try:
            kind, reward = next(source)
        except StopIteration:
            break
        except Exception as e:  # noqa: BLE001
            note = f"building the rewards stopped after {[r.kind for r in rewards]}: {failure(ctx, e)}"
            break
        if kind in REWARDS:
            if ctx.real:  # reward_bench leaves the weights uninitialised (NaN scores); draw them like the UNets'
                init_(reward.module, 10 + len(rewards), ctx.device)
            rewards.append(reward)
    return rewards, note


def conditioning(model, batch: int, seed: int):
    """Random text conditioning of the model's widths: cross-attention context [B, 77, D] and pooled [B, P]."""
    import torch

    from quickstep.distill import step

    unet = model.model.model_config.unet_config
    gen = torch.Generator().manual_seed(seed)
    cond = torch.randn(batch, 77, int(unet["context_dim"]), generator=gen)
    pooled = torch.randn(batch, step.pooled_dim(model), generator=gen)
    return cond, pooled


def weight_bytes(module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def tflop(flops: float) -> str:
    return f"{flops / 1e12:.3g}"


def fmt_gb(nbytes: float) -> str:
    return f"{nbytes / GB:.3g}"


def fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.3f}" if seconds < 10 else f"{seconds:.1f}"


# --------------------------------------------------------------------------------------------------- env

def measure_ceiling(ctx: Ctx) -> float:
    """bf16 (CUDA) or fp32 (CPU) matmul FLOP/s: the rate the floors are computed at."""
    import torch

    n, reps = (8192, 10) if ctx.cuda else (512, 5)
    a = torch.randn(n, n, device=ctx.device, dtype=ctx.dtype)
    b = torch.randn(n, n, device=ctx.device, dtype=ctx.dtype)
    for _ in range(3):
        a @ b
    t0 = ctx.now()
    for _ in range(reps):
        a @ b
    seconds = (ctx.now() - t0) / reps
    del a, b
    return 2 * n ** 3 / seconds


def header(ctx: Ctx, host: Path, stubbed: list[str], argv: list[str]) -> list[str]:
    import torch

    if ctx.cuda:
        props = torch.cuda.get_device_properties(ctx.device)
        device = f"{torch.cuda.get_device_name(ctx.device)} ({props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda})"
    else:
        device = f"CPU ({torch.get_num_threads()} torch thread(s); no peak-memory counter)"
    manifest = host.parent / "MANIFEST.txt"
    commit = _commit() or (_manifest_field(manifest, "quickstep commit") if manifest.is_file() else None)
    size = "real (random weights, released architectures)" if ctx.real else "tiny (dry run: tiny test models)"
    return [
        "# Real-size device figures (LADD, ReNO, Turbo)", "",
        f"Command: `python3 benchmarks/device_real_size.py {' '.join(argv)}`", "",
        f"- device: {device}",
        f"- torch {torch.__version__}; {device_host._host_version(host)} from {host}",
        f"- quickstep commit: {commit or 'unknown'}",
        f"- size: {size}; model dtype {str(ctx.dtype).replace('torch.', '')}",
        f"- measured matmul ceiling: {tflop(ctx.ceiling)} TFLOP/s "
        f"({'bf16 8192^3' if ctx.cuda else 'fp32 512^3'}); floors below are FLOPs at this rate",
        *([f"- import stubs for packages missing here: {', '.join(stubbed)} (never called)"] if stubbed else []),
        f"- budget {ctx.budget.seconds:.0f} s",
    ]


def _commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _manifest_field(path: Path, name: str) -> str | None:
    for line in path.read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    return None


# --------------------------------------------------------------------------------------------------- LADD

def ladd_step_run(ctx: Ctx, model, latents, cond, pooled, rank: int, steps: int, slice_s: float) -> dict:
    """Quickstep LADD: 2 warm-up steps, up to `steps` timed ones (within `slice_s`), then one counted step."""
    import torch

    from quickstep.distill import dataset, lora, step

    batch = latents.shape[0]
    ctx.reset_peak()
    with torch.inference_mode():  # as the node runs it
        config = step.Config(rank=rank, bf16=True, gradient_checkpointing=True)
        params = lora.init_params(lora.target_modules(model), rank, torch.Generator().manual_seed(0))
        trainer = step.Trainer(model, config, params)
        data = dataset.Dataset(latents, cond, pooled, [""] * batch, {}, "memory")
        times, t_end = [], time.monotonic() + slice_s
        with counting_rows() as rows:
            for i in range(2 + steps):
                t0 = ctx.now()
                step.train_step(trainer, data.sample_batch(batch, trainer.generator))
                if i >= 2:
                    times.append(ctx.now() - t0)
                if i == 1:
                    rows.clear()
                if i >= 2 and time.monotonic() > t_end:
                    break
        counted_rows = sum(rows) / max(len(times), 1)
        with flop_counter() as counter:
            step.train_step(trainer, data.sample_batch(batch, trainer.generator))
    peak = ctx.peak()
    del trainer
    return {"seconds": statistics.median(times), "n": len(times), "rows": counted_rows,
            "flops": counter.get_total_flops(), "peak": peak}


def core_step_run(ctx: Ctx, model, latents, cond, pooled, rank: int, steps: int, slice_s: float) -> dict:
    """core TrainLoraNode on the same UNet (AdamW, MSE, bf16 training and LoRA dtype, its defaults), in one run: a step is the time between two optimizer steps (a post-step
    hook); steps 1-2 are warm-up, then up to `steps` timed ones (within `slice_s`), then one counted with
    FlopCounterMode, after which the hook stops the node."""
    import comfy_extras.nodes_train as nodes_train
    import torch

    batch = latents.shape[0]
    stamps: list[float] = []
    counter = flop_counter()
    state = {"counting": False, "timed_until": 0}
    t_end = time.monotonic() + slice_s

    class Enough(Exception):
        pass

    def hook(*_):
        stamps.append(ctx.now())
        k = len(stamps)  # step k just ended
        if state["counting"]:
            counter.__exit__(None, None, None)
            state["counting"] = False
            raise Enough
        if k >= 2 + steps or (k >= 3 and time.monotonic() > t_end):
            state["counting"], state["timed_until"] = True, k
            counter.__enter__()

    original = nodes_train._create_optimizer

    def create(name, parameters, lr):
        optimizer = original(name, parameters, lr)
        optimizer.register_step_post_hook(hook)
        return optimizer

    positive = [[[cond[i:i + 1], {"pooled_output": pooled[i:i + 1]}]] for i in range(batch)]
    dtype = "bf16" if ctx.cuda else "fp32"  # core's defaults on a GPU; on the CPU fp32, as LADD's autocast is off there
    ctx.reset_peak()
    nodes_train._create_optimizer = create
    try:
        with torch.inference_mode(), counting_rows() as rows:
            nodes_train.TrainLoraNode.execute(
                model=[model], latents=[{"samples": latents}], positive=positive, batch_size=[batch],
                steps=[steps + 8], grad_accumulation_steps=[1], learning_rate=[1e-4], rank=[rank],
                optimizer=["AdamW"], loss_function=["MSE"], seed=[0], training_dtype=[dtype], lora_dtype=[dtype],
                quantized_backward=[False], algorithm=["LoRA"], gradient_checkpointing=[True], checkpoint_depth=[1],
                offloading=[False], existing_lora=["[None]"], bucket_mode=[False], bypass_mode=[False])
        raise RuntimeError(f"core TrainLoraNode ended after {len(stamps)} optimizer steps, before the counted one")
    except Enough:
        pass
    finally:
        nodes_train._create_optimizer = original
        if state["counting"]:
            counter.__exit__(None, None, None)
    peak = ctx.peak()
    until = state["timed_until"]
    times = [stamps[i] - stamps[i - 1] for i in range(2, until)]  # steps 3 .. until
    return {"seconds": statistics.median(times), "n": len(times), "rows": sum(rows) / len(stamps),
            "flops": counter.get_total_flops(), "peak": peak}


def section_ladd(ctx: Ctx) -> None:
    import torch

    a = ctx.args
    configs = [(arch, int(px)) for arch, px in (c.split(":") for c in a.ladd_configs.split(","))]
    name = "ladd"
    precision = "bf16 autocast (LADD: fp32 LoRA and heads; core: its bf16 LoRA default)" if ctx.cuda else "fp32"
    ctx.report.add(name, "## LADD step vs core TrainLoraNode (issue 16)", "",
                   f"LoRA rank {a.rank}, batch {a.batch}, {precision}, AdamW, gradient checkpointing on, random latents "
                   "and conditioning; median of the timed steps after two warm-up steps. FLOPs: FlopCounterMode over "
                   "one real step (recomputation included). Floor: those FLOPs at the measured matmul ceiling. Peak: "
                   "torch.cuda.max_memory_allocated over set-up and steps, the MODEL's weights starting on the CPU.",
                   "", "| UNet | px | method | s / step | model rows / step | TFLOP / step | achieved TFLOP/s | "
                   "floor s / step | x floor | peak GB | weights GB |", "|---|---|---|---|---|---|---|---|---|---|---|")
    for arch, px in configs:
        label = f"| {UNET_NAMES[arch]} | {px}{'' if ctx.px(px) == px else f' (run at {ctx.px(px)})'} |"
        need = NEED_S["ladd"][(arch, px)] if ctx.real else 0
        if ctx.budget.left() < need:
            ctx.report.add(name, f"{label} both | skipped: {ctx.budget.left():.0f} s of budget left, ~{need} s "
                                 "needed | | | | | | | |")
            continue
        results = {}
        try:
            model = build_unet(ctx, arch)
            weights = weight_bytes(model.model.diffusion_model)
            cond, pooled = conditioning(model, a.batch, seed=1)
            s = ctx.px(px) // 8
            latents = torch.randn(a.batch, 4, s, s, generator=torch.Generator().manual_seed(2))
        except Exception as e:  # noqa: BLE001  (a report row, then the next config)
            ctx.report.add(name, f"{label} both | {failure(ctx, e)} | | | | | | | |")
            cleanup(ctx)
            continue
        for method, run in (("core TrainLoraNode", core_step_run), ("Quickstep LADD", ladd_step_run)):
            slice_s = max(need / 3, 5.0) if ctx.real else 30.0
            try:
                res = run(ctx, model, latents, cond, pooled, a.rank, a.steps, slice_s)
                results[method] = res
                floor = res["flops"] / ctx.ceiling
                ctx.report.add(name, f"{label} {method} | {fmt_s(res['seconds'])} (n={res['n']}) | "
                                     f"{res['rows']:.0f} | {tflop(res['flops'])} | "
                                     f"{tflop(res['flops'] / res['seconds'])} | {fmt_s(floor)} | "
                                     f"{res['seconds'] / floor:.2f} | {gb(res['peak'])} | {fmt_gb(weights)} |")
            except Exception as e:  # noqa: BLE001
                ctx.report.add(name, f"{label} {method} | {failure(ctx, e)} | | | | | | | {fmt_gb(weights)} |")
            cleanup(ctx)
        if len(results) == 2:
            core, ladd = results["core TrainLoraNode"], results["Quickstep LADD"]
            mem = (f"**{ladd['peak'] / core['peak']:.2f}x**" if ladd["peak"] and core["peak"] else "n/a")
            target = ""
            if (arch, px) == ("sdxl", 1024) and ladd["peak"]:
                target = f" (target <= 24 GB: {'met' if ladd['peak'] <= 24 * GB else 'missed'})"
            ctx.report.add(name, f"{label} **LADD / core** | **{ladd['seconds'] / core['seconds']:.2f}x** | "
                                 f"{ladd['rows'] / core['rows']:.2f}x | {ladd['flops'] / core['flops']:.2f}x | | | | "
                                 f"{mem}{target} | |")
        del model
        cleanup(ctx)
    ctx.report.add(name, "", "Model rows / step: batch rows fed to the UNet per training step (core runs each "
                             "image's cond over the whole batch, so batch 2 gives 4 rows; LADD's student B, "
                             "discriminator 2B truncated, generator B truncated).")


# --------------------------------------------------------------------------------------------------- ReNO

def reno_run(ctx: Ctx, model, vae, stack, positive, latent, prompt, iterations: int, parts) -> dict:
    import torch

    from quickstep.samplers import reno

    config = reno.ReNOConfig(iterations=iterations, checkpointing=frozenset(parts),
                             precision="bf16" if ctx.cuda else "fp32")
    stamps = []
    ctx.reset_peak()
    t0 = ctx.now()
    with torch.inference_mode():
        reno.optimise_noise(model, vae, stack, positive, None, latent, prompt, 0, config,
                            on_iteration=lambda k, n, images: stamps.append(ctx.now()))
    total = ctx.now() - t0
    # iteration k (0-based) ends at stamps[k]: iterations 1 .. n-2; iteration 0 holds set-up, n-1 has no backward
    per = [b - a for a, b in zip(stamps[:-1], stamps[1:], strict=True)][:-1]
    return {"run": total, "iteration": statistics.median(per) if per else total / iterations, "peak": ctx.peak(),
            "iterations": iterations}


def reno_floor(ctx: Ctx, model, vae, rewards, positive, latent, prompt, reps: int) -> dict:
    """Each part's forward and forward + backward alone (the calls ReNO makes), median of `reps`, and its FLOPs."""
    import torch

    from quickstep.samplers import differentiable as diff
    from quickstep.samplers import reno, schedule

    samples = latent["samples"]
    ready_model = diff.grad_ready(model, "diffusion_model")
    ready_vae = diff.grad_ready(vae.patcher)
    sigmas = schedule.turbo_sigmas(model.get_model_object("model_sampling"), 1)
    z0 = torch.randn(samples.shape, generator=torch.Generator().manual_seed(0))
    prompts = [prompt] * samples.shape[0]
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if ctx.cuda else (
        lambda: torch.autocast("cpu", enabled=False))
    out = {}

    def timed(part, forward):
        def once(backward):
            with autocast():
                y = forward()
            if backward:
                y.float().sum().backward()

        once(True)  # warm-up
        with flop_counter() as counter:
            once(True)
        f, fb = [], []
        for _ in range(reps):
            t0 = ctx.now()
            once(False)
            f.append(ctx.now() - t0)
            t0 = ctx.now()
            once(True)
            fb.append(ctx.now() - t0)
        out[part] = (statistics.median(f), statistics.median(fb), counter.get_total_flops())

    with torch.inference_mode(), diff.autograd_enabled():
        gen = reno._Generator(ready_model, sigmas, torch.zeros_like(z0).to(ctx.device))

        def body(denoise, ms):
            timed("generator", lambda: gen(denoise, ms, z0.to(ctx.device).clone().requires_grad_()))
            return gen(denoise, ms, z0.to(ctx.device)).detach()

        lat = diff.run_guided(ready_model, positive, None, 1.0, samples, body)
        timed("VAE decoder", lambda: diff.decode(vae, lat.clone().requires_grad_(), ready_vae))
        images = diff.decode(vae, lat, ready_vae).detach().float()
        for reward in rewards:
            timed(f"reward {reward.kind}", lambda reward=reward: reward.score(images.clone().requires_grad_(), prompts))
    return out


def section_reno(ctx: Ctx) -> None:
    import torch

    from quickstep.reward.stack import RewardStack

    a = ctx.args
    name = "reno"
    px = ctx.px(512)
    iterations = a.reno_iterations
    ctx.report.add(name, "## ReNO at real size (issue 10)", "",
                   f"{px} px, batch {a.reno_batch}, 1 step, cfg 1, precision {'bf16' if ctx.cuda else 'fp32'}, "
                   f"rewards {', '.join(REWARDS)} (weight 1 each, random weights: benchmarks/reward_bench.py's builders), SGD paper defaults, "
                   f"{iterations} iterations per run. s / iteration: median time between iteration callbacks "
                   "(forward, reward gradients, backward, update); run: the whole optimise_noise call (set-up, text "
                   "features, all iterations). Peak: torch.cuda.max_memory_allocated during the run, all weights "
                   "included (the rewards stay resident).")
    if ctx.budget.left() < (NEED_S["reno"] if ctx.real else 0):
        ctx.report.add(name, "", f"skipped: {ctx.budget.left():.0f} s of budget left")
        return
    try:
        vae = build_vae(ctx)
        rewards, note = build_rewards(ctx)
        if note:
            ctx.report.add(name, "", note)
        stack = RewardStack([(r, 1.0) for r in rewards])
    except Exception as e:  # noqa: BLE001
        ctx.report.add(name, "", f"VAE / rewards: {failure(ctx, e)}")
        return
    reward_bytes = sum(weight_bytes(r.module) for r in rewards)
    vae_bytes = weight_bytes(vae.first_stage_model.decoder)
    prompt = "a photo of a red circle to the left of a blue square"
    params = ", ".join(f"{r.kind} {sum(p.numel() for p in r.module.parameters()) / 1e6:.0f} M" for r in rewards)
    ctx.report.add(name, "", f"Weights: VAE decoder {fmt_gb(vae_bytes)} GB, rewards {fmt_gb(reward_bytes)} GB "
                             f"(parameters: {params}).",
                   "", "| model | checkpointing | s / iteration | run s (iterations) | s for 50 iterations | "
                   "peak GB | weights GB (UNet + VAE dec. + rewards) |", "|---|---|---|---|---|---|---|")
    floors = []
    for title, arch in RENO_MODELS:
        if ctx.budget.left() < (NEED_S["reno"] if ctx.real else 0):
            ctx.report.add(name, f"| {title} | skipped: {ctx.budget.left():.0f} s of budget left | | | | | |")
            continue
        try:
            model = build_unet(ctx, arch)
            cond, pooled = conditioning(model, a.reno_batch, seed=3)
            positive = [[cond, {"pooled_output": pooled}]]
            s = px // 8
            latent = {"samples": torch.zeros(a.reno_batch, 4, s, s)}
            unet_bytes = weight_bytes(model.model.diffusion_model)
        except Exception as e:  # noqa: BLE001
            ctx.report.add(name, f"| {title} | {failure(ctx, e)} | | | | | |")
            cleanup(ctx)
            continue
        weights = fmt_gb(unet_bytes + vae_bytes + reward_bytes)
        runs = {}
        try:  # warm-up: loads the models and picks the kernels, so neither the runs nor the floor pay for it
            reno_run(ctx, model, vae, stack, positive, latent, prompt, 2, ())
        except Exception as e:  # noqa: BLE001
            ctx.report.add(name, f"| {title} | warm-up | {failure(ctx, e)} | | | | {weights} |")
        for label, parts in (("off", ()), ("all (generator, VAE, rewards)", ("generator", "vae", "rewards"))):
            n = iterations if ctx.budget.left() > (30 if ctx.real else 0) else max(3, iterations // 5)
            try:
                r = reno_run(ctx, model, vae, stack, positive, latent, prompt, n, parts)
                runs[label] = r
                setup = r["run"] - n * r["iteration"]
                ctx.report.add(name, f"| {title} ({UNET_NAMES[arch]} UNet) | {label} | {fmt_s(r['iteration'])} | "
                                     f"{fmt_s(r['run'])} ({n}) | {fmt_s(max(setup, 0) + 50 * r['iteration'])} | "
                                     f"{gb(r['peak'])} | {weights} |")
            except Exception as e:  # noqa: BLE001
                ctx.report.add(name, f"| {title} | {label} | {failure(ctx, e)} | | | | {weights} |")
            cleanup(ctx, unload=False)
        try:
            parts = reno_floor(ctx, model, vae, rewards, positive, latent, prompt, reps=a.floor_reps)
            floors.append((title, parts, runs.get("off")))
        except Exception as e:  # noqa: BLE001
            floors.append((title, failure(ctx, e), None))
        del model
        cleanup(ctx)
    lines = ["", "Floor: each part alone, forward and forward + backward (median), FLOPs of forward + backward "
             "(FlopCounterMode), and a run's floor = (n - 1) x forward + backward + 1 x forward of all parts (n "
             "forward passes, n - 1 backward: no update after the last), the definition of benchmarks/reno_bench.py.",
             "", "| model | part | forward ms | forward + backward ms | TFLOP fwd + bwd | achieved TFLOP/s |",
             "|---|---|---|---|---|---|"]
    summary = ["", "| model | floor per run (s) | ReNO run, checkpointing off (s) | **ReNO / floor** | TFLOP per "
               "iteration | FLOP floor per iteration at the ceiling (s) | s / iteration vs FLOP floor |",
               "|---|---|---|---|---|---|---|"]
    for title, parts, off in floors:
        if isinstance(parts, str):
            lines.append(f"| {title} | {parts} | | | | |")
            continue
        for part, (f, fb, flops) in parts.items():
            lines.append(f"| {title} | {part} | {1e3 * f:.1f} | {1e3 * fb:.1f} | {flops / 1e12:.3f} | "
                         f"{flops / fb / 1e12:.1f} |")
        if off is not None:
            n = off["iterations"]
            floor_run = sum((n - 1) * fb + f for f, fb, _ in parts.values())
            flops = sum(fl for _, _, fl in parts.values())
            summary.append(f"| {title} | {fmt_s(floor_run)} | {fmt_s(off['run'])} | **{off['run'] / floor_run:.3f}** | "
                           f"{tflop(flops)} | {fmt_s(flops / ctx.ceiling)} | "
                           f"{off['iteration'] / (flops / ctx.ceiling):.2f}x |")
    ctx.report.add(name, *lines, *summary, "", "Targets (issue 10, H100/H200): SD-Turbo <= 8 s for 50 iterations "
                   "and <= 10 GB; SDXL-Turbo <= 16 GB; ReNO / floor <= 1.10. Anchor: the paper's ~20 s and ~15 GB for "
                   "SD-Turbo on an A100.")
    del rewards, stack, vae
    cleanup(ctx)


# --------------------------------------------------------------------------------------------------- Turbo

def section_turbo(ctx: Ctx) -> None:
    import comfy.model_management as mm
    import comfy.samplers
    import comfy.utils
    import torch
    from comfy_extras.nodes_custom_sampler import SamplerCustom, SDTurboScheduler

    from quickstep.nodes.turbo import TurboKSampler

    name = "turbo"
    px = ctx.px(512)
    reps = ctx.args.turbo_repeats
    ctx.report.add(name, "## Turbo sampler overhead at real size", "",
                   f"SD1.5 UNet, {px} px, batch 1, cfg 1; median of {reps} interleaved runs (benchmarks/"
                   "turbo_overhead.py's method): bare = the model calls alone (the floor), ours = Quickstep Turbo "
                   "KSampler, core = SamplerCustom + SDTurboScheduler + euler_ancestral.", "",
                   "| steps | bare ms | ours ms | core ms | ours / bare | ours / core |", "|---|---|---|---|---|---|")
    if ctx.budget.left() < (NEED_S["turbo"] if ctx.real else 0):
        ctx.report.add(name, f"| skipped: {ctx.budget.left():.0f} s of budget left | | | | | |")
        return
    comfy.utils.PROGRESS_BAR_ENABLED = False
    model = build_unet(ctx, "sd15")
    cond_t, pooled = conditioning(model, 1, seed=4)
    cond = [[cond_t, {"pooled_output": pooled}]]
    s = px // 8
    latent = {"samples": torch.zeros(1, 4, s, s)}
    mm.load_models_gpu([model])
    x = torch.randn(1, 4, s, s, device=ctx.device)
    sigma = torch.tensor([14.6], device=ctx.device)
    context = cond_t.to(ctx.device, ctx.dtype)

    def ours(steps):
        TurboKSampler.execute(model, cond, cond, latent, 0, steps, 1.0, "auto", 1.0, 1.0)

    def core(steps):
        sigmas = SDTurboScheduler.execute(model, steps, 1.0).result[0]
        SamplerCustom.execute(model, True, 0, 1.0, cond, cond, comfy.samplers.sampler_object("euler_ancestral"),
                              sigmas, latent)

    def bare(steps):
        for _ in range(steps):
            model.model.apply_model(x, sigma, c_crossattn=context)

    runners = {"bare": bare, "ours": ours, "core": core}
    try:
        with torch.inference_mode():
            for steps in (1, 4):
                times = {k: [] for k in runners}
                for fn in runners.values():
                    fn(steps)
                for _ in range(reps):
                    for k, fn in runners.items():
                        t0 = ctx.now()
                        fn(steps)
                        times[k].append(ctx.now() - t0)
                b, o, c = (statistics.median(times[k]) for k in ("bare", "ours", "core"))
                ctx.report.add(name, f"| {steps} | {1e3 * b:.1f} | {1e3 * o:.1f} | {1e3 * c:.1f} | {o / b:.3f} | "
                                     f"{o / c:.3f} |")
    except Exception as e:  # noqa: BLE001
        ctx.report.add(name, f"| {failure(ctx, e)} | | | | | |")
    cleanup(ctx)


# --------------------------------------------------------------------------------------------------- main

def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["real", "tiny"], default="real")
    parser.add_argument("--device", choices=["cuda", "cpu"], default=None, help="default: cuda when available")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="stop starting units when this little is left and write the report (seconds)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {SECTIONS}")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "device_real_size.md")
    parser.add_argument("--host-dir", type=Path, default=None,
                        help="a folder written by --stage (on the device); default: the pinned host as the tests "
                             "find it ($QUICKSTEP_HOST_CURRENT, $COMFYUI_PATH, the cache)")
    parser.add_argument("--stage", type=Path, default=None, metavar="DIR",
                        help="write the carry folder for a device call (the host, packages) to DIR and exit")
    parser.add_argument("--px", type=int, default=0,
                        help="images of this many px instead of 512 (and twice that instead of 1024): quick checks")
    parser.add_argument("--ladd-configs", default=None,
                        help="UNet:px pairs of the LADD section (default sdxl:1024,sd15:512,sdxl:512,sd15:1024, the "
                             "target first; tiny: sdxl:1024,sd15:512)")
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None, help="timed training steps (real 6, tiny 2)")
    parser.add_argument("--reno-iterations", type=int, default=None, help="ReNO iterations per run (real 50, tiny 4)")
    parser.add_argument("--reno-batch", type=int, default=1)
    parser.add_argument("--floor-reps", type=int, default=None, help="repeats of each floor part (real 5, tiny 2)")
    parser.add_argument("--turbo-repeats", type=int, default=None, help="(real 10, tiny 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the shared CPU machine: 1)")
    args = parser.parse_args(argv)
    real = args.size == "real"
    for key, real_value, tiny_value in (("steps", 6, 2), ("reno_iterations", 50, 4), ("floor_reps", 5, 2),
                                        ("turbo_repeats", 10, 2)):
        if getattr(args, key) is None:
            setattr(args, key, real_value if real else tiny_value)
    if args.ladd_configs is None:
        args.ladd_configs = "sdxl:1024,sd15:512,sdxl:512,sd15:1024" if real else "sdxl:1024,sd15:512"
    for c in args.ladd_configs.split(","):
        arch, _, px = c.partition(":")
        if arch not in ("sd15", "sdxl") or px not in ("512", "1024"):
            parser.error(f"--ladd-configs: {c!r} is not UNet:px with UNet sd15 or sdxl and px 512 or 1024, e.g. "
                         "sdxl:1024,sd15:512")
    unknown = set(filter(None, args.only.split(","))) - set(SECTIONS)
    if unknown:
        parser.error(f"--only: unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    if args.batch < 1 or args.rank < 1 or args.steps < 1 or args.reno_iterations < 3:
        parser.error("--batch, --rank and --steps must be >= 1 and --reno-iterations >= 3")
    return args


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    if args.stage is not None:
        import harness

        summary = device_host.stage(args.stage, harness.host_path("current"))
        commit = _commit()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        with (args.stage / "MANIFEST.txt").open("a") as f:
            f.write(f"quickstep commit: {commit or 'unknown'}{' (with uncommitted changes)' if dirty else ''}\n")
        print(summary)
        print(f"staged in {args.stage}; carry it: run(carry=[{str(args.stage)!r}], ...)")
        return 0
    budget = Budget(args.budget_s)
    stubbed: list[str] = []
    if args.host_dir is not None:
        host, stubbed = device_host.activate(args.host_dir)
    else:
        import harness

        host = harness.host_path("current")
    import torch

    device_name = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device_name == "cuda" and not torch.cuda.is_available():
        print("--device cuda: torch sees no CUDA device here; run it on the device machine or pass --device cpu",
              file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    device_host.import_host(host, cpu=device_name == "cpu")
    from host.inprocess import register_pack

    register_pack()
    import comfy.model_management as mm

    device = mm.get_torch_device()
    report = Report(args.out)
    ctx = Ctx(args=args, device=device, budget=budget, report=report, real=args.size == "real")
    ctx.ceiling = measure_ceiling(ctx)
    report.header = header(ctx, Path(host), stubbed, argv)
    report.write()
    timings = []
    for section in [s for s in SECTIONS if s in args.only.split(",")]:
        t0 = time.monotonic()
        print(f"[device_real_size] {section} ({budget.left():.0f} s of budget left)", flush=True)
        try:
            {"ladd": section_ladd, "reno": section_reno, "turbo": section_turbo}[section](ctx)
        except Exception as e:  # noqa: BLE001  (a section that breaks is reported; the others still run)
            report.add(section, "", f"section {section} stopped: {failure(ctx, e)}")
            cleanup(ctx)
        timings.append(f"{section} {time.monotonic() - t0:.0f} s")
    report.add("end", f"Sections: {', '.join(timings)}; total {budget.elapsed():.0f} s of the {budget.seconds:.0f} s "
                      "budget.")
    print(report.text(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
