"""Turbo sampling overhead, side by side in one run (CPU unless a GPU is present).

For 1 and 4 steps on one SD1-shaped UNet, times (median of interleaved repeats, with the interquartile range):
  ours  - QuickstepTurboKSampler (schedule + sampler rule + core's guider/conds/noise path)
  bare  - the same number of bare `apply_model` calls (the floor: the model calls any sampler must make)
  core  - core SamplerCustom + SDTurboScheduler + euler_ancestral
and the FLOPs of one model call (torch's FlopCounterMode), so the floor is also stated in FLOPs. On the CPU the clock
is this process's CPU time, so other processes on a shared machine inflate it less than wall time would. Hooks on
the diffusion model also time the model calls inside each run, giving the overhead outside the model in the same
execution (immune to drift between runs).

    ~/.cache/quickstep/venv/bin/python benchmarks/turbo_overhead.py [--repeats 15] [--size 32]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from host.inprocess import import_host, register_pack  # noqa: E402
from host.locate import find_host  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--size", type=int, default=32, help="latent side (32 = a 256 px image)")
    parser.add_argument("--channels", type=int, default=64, help="UNet model_channels")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "turbo_overhead.md")
    args = parser.parse_args()

    import_host(find_host("current"))
    register_pack()
    import comfy.model_management as mm
    import comfy.utils
    import torch
    from comfy_extras.nodes_custom_sampler import SamplerCustom, SDTurboScheduler
    from torch.utils.flop_counter import FlopCounterMode

    from comfy_testpack import tiny_models
    from quickstep.nodes.turbo import TurboKSampler

    torch.set_num_threads(args.threads)
    comfy.utils.PROGRESS_BAR_ENABLED = False
    model = tiny_models.build_model("sd1", model_channels=args.channels)
    clip = tiny_models.build_clip("sd1")
    cond = clip.encode_from_tokens_scheduled(clip.tokenize("a red circle left of a blue square"))
    latent = {"samples": torch.zeros(1, 4, args.size, args.size)}
    device = mm.get_torch_device()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    inside = {"t": 0.0, "start": 0.0}

    def enter(module, inputs):
        sync()
        inside["start"] = clock()

    def leave(module, inputs, output):
        sync()
        inside["t"] += clock() - inside["start"]

    net = model.model.diffusion_model
    net.register_forward_pre_hook(enter)
    net.register_forward_hook(leave)

    def ours(steps):
        TurboKSampler.execute(model, cond, cond, latent, 0, steps, 1.0, "auto", 1.0, 1.0)

    def core(steps):
        sigmas = SDTurboScheduler.execute(model, steps, 1.0).result[0]
        sampler = comfy.samplers.sampler_object("euler_ancestral")
        SamplerCustom.execute(model, True, 0, 1.0, cond, cond, sampler, sigmas, latent)

    mm.load_models_gpu([model])
    context = cond[0][0].to(device)
    x = torch.randn(1, 4, args.size, args.size, device=device)
    sigma = torch.tensor([14.6], device=device)

    def bare(steps):
        for _ in range(steps):
            model.model.apply_model(x, sigma, c_crossattn=context)

    import comfy.samplers  # noqa: F401  (for sampler_object above)

    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            model.model.apply_model(x, sigma, c_crossattn=context)
        flops = counter.get_total_flops()
        runners = {"ours": ours, "bare": bare, "core": core}
        rows = []
        for steps in (1, 4):
            times = {name: [] for name in runners}
            outside = {name: [] for name in runners}
            for fn in runners.values():  # warm-up
                fn(steps)
            for _ in range(args.repeats):
                for name, fn in runners.items():  # interleaved, so drift hits all three alike
                    sync()
                    inside["t"] = 0.0
                    start = clock()
                    fn(steps)
                    sync()
                    total = clock() - start
                    times[name].append(total)
                    outside[name].append((total - inside["t"]) / inside["t"])
            rows.append((steps, times, outside))

    def stat(values):
        q = statistics.quantiles(values, n=4)
        return statistics.median(values), q[0], q[2]

    device_name = (torch.cuda.get_device_name() if device.type == "cuda"
                   else f"CPU, {args.threads} thread(s), process CPU time")
    lines = [f"Device: {device_name}; SD1-shaped UNet, model_channels {args.channels}, latent {args.size}x{args.size}, "
             f"{sum(p.numel() for p in model.model.diffusion_model.parameters()) / 1e6:.2f} M params, "
             f"{flops / 1e9:.3f} GFLOP per model call; median of {args.repeats} interleaved runs [IQR].", "",
             "| steps | bare model calls (floor) | Quickstep Turbo KSampler | core SamplerCustom + SDTurboScheduler + "
             "euler_ancestral | ours / bare | ours / core | time outside the model: ours, core | floor throughput |",
             "|---|---|---|---|---|---|---|---|"]
    for steps, times, outside in rows:
        (b, b1, b3), (o, o1, o3), (c, c1, c3) = stat(times["bare"]), stat(times["ours"]), stat(times["core"])
        lines.append(f"| {steps} | {b * 1e3:.1f} ms [{b1 * 1e3:.1f}-{b3 * 1e3:.1f}] | {o * 1e3:.1f} ms "
                     f"[{o1 * 1e3:.1f}-{o3 * 1e3:.1f}] | {c * 1e3:.1f} ms [{c1 * 1e3:.1f}-{c3 * 1e3:.1f}] | "
                     f"{o / b:.3f} | {o / c:.3f} | {statistics.median(outside['ours']):.1%}, "
                     f"{statistics.median(outside['core']):.1%} | {steps * flops / b / 1e9:.1f} GFLOP/s |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
