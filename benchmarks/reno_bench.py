"""ReNO cost against its floor: one iteration of `samplers/reno.py` (what the QuickstepReNO node runs) against the
minimal forward + backward of the same generator, VAE decoder and rewards, each timed on its own in the same run,
plus the memory autograd keeps for backward with and without gradient checkpointing.

    ~/.cache/quickstep/venv/bin/python benchmarks/reno_bench.py                 # CPU, the shipped toy world
    ~/.cache/quickstep/venv/bin/python benchmarks/reno_bench.py --out benchmarks/results/reno_bench.md

The floor is what any implementation must pay per iteration: one differentiable generator call per step (x0 through
core's guider, backward to the noise), one differentiable VAE decode, and each reward's forward + backward on the
image. ReNO's time per iteration is a whole run (guider set-up, text features, optimiser, best-iterate bookkeeping,
progress callbacks) divided by its iterations; the ratio to the floor is the overhead. Runs are interleaved and the
median of `--repeats` is reported, as process CPU time (the machine is shared).

Memory: bytes of the activations autograd keeps for backward after the forward pass of one iteration (generator,
VAE and rewards; counted in the pack hook `samplers.differentiable.autograd_enabled` installs), without and with
`checkpointing` all.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import harness  # noqa: E402

harness.register_pack()


def cpu_time(fn):
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=10, help="ReNO iterations per timed run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    harness.setup_inprocess_host("current")

    import comfy.model_management as mm

    from quickstep.reward.stack import RewardStack
    from quickstep.samplers import differentiable as diff
    from quickstep.samplers import reno, schedule
    from quickstep.toyworld import generate, models
    from quickstep.toyworld.models import load_toy_reward

    with torch.inference_mode():
        model, clip, vae = models.load_unet(), models.load_clip(), models.load_vae()
        reward = load_toy_reward()
        stack = RewardStack([(reward, 1.0)])
        prompt = "a photo of a red circle and a blue square"
        pos = generate.encode(clip, prompt)
    latent = {"samples": torch.zeros(args.batch, 4, models.LATENT, models.LATENT)}
    prompts = [prompt] * args.batch

    def reno_run(checkpointing=frozenset(), iterations=args.iterations, on_iteration=None):
        config = reno.ReNOConfig(iterations=iterations, steps=args.steps, checkpointing=checkpointing)
        with torch.inference_mode():
            return reno.optimise_noise(model, vae, stack, pos, None, latent, prompt, 0, config, on_iteration)

    # the floor: each part's forward + backward on its own, the same calls ReNO makes
    ready_model = diff.grad_ready(model, "diffusion_model")
    ready_vae = diff.grad_ready(vae.patcher)
    sigmas = schedule.turbo_sigmas(model.get_model_object("model_sampling"), args.steps)
    z0 = torch.randn(latent["samples"].shape, generator=torch.Generator().manual_seed(0))

    flops = {}

    def timed(forward, part):
        """(forward only, forward + backward) mean CPU seconds of `forward(leaf)` on a fresh leaf."""
        def once(backward):
            out = forward()
            if backward:
                out.sum().backward()
        if part not in flops:  # counted once, outside the timed calls
            with FlopCounterMode(display=False) as counter:
                once(True)
            flops[part] = counter.get_total_flops()
        return (statistics.mean(cpu_time(lambda: once(False)) for _ in range(args.iterations)),
                statistics.mean(cpu_time(lambda: once(True)) for _ in range(args.iterations)))

    def generator_part():
        generate_latent = reno._Generator(ready_model, sigmas, torch.zeros_like(z0))

        def body(denoise, ms):
            return timed(lambda: generate_latent(denoise, ms, z0.clone().requires_grad_()), "generator")

        with torch.inference_mode(), diff.autograd_enabled():
            return diff.run_guided(ready_model, pos, None, 1.0, latent["samples"], body)

    with torch.inference_mode(), diff.autograd_enabled():
        x_latent = reno._Generator(ready_model, sigmas, torch.zeros_like(z0))
        lat = diff.run_guided(ready_model, pos, None, 1.0, latent["samples"],
                              lambda d, ms: x_latent(d, ms, z0.clone())).detach()
        images = diff.decode(vae, lat, ready_vae).detach()

    def vae_part():
        with torch.inference_mode(), diff.autograd_enabled():
            return timed(lambda: diff.decode(vae, lat.clone().requires_grad_(), ready_vae), "vae")

    def reward_part():
        with torch.inference_mode(), diff.autograd_enabled():
            return timed(lambda: reward.score(images.clone().requires_grad_(), prompts), "rewards")

    reno_run(iterations=2)  # warm-up
    rows = {"reno": [], "generator": [], "vae": [], "rewards": []}
    for _ in range(args.repeats):
        rows["reno"].append(cpu_time(reno_run))
        rows["generator"].append(generator_part())
        rows["vae"].append(vae_part())
        rows["rewards"].append(reward_part())
    med = {"reno": statistics.median(rows["reno"])}
    for part in ("generator", "vae", "rewards"):
        med[part] = tuple(statistics.median(r[i] for r in rows[part]) for i in range(2))
    n = args.iterations
    # a run of n iterations makes n forward passes and n - 1 backward passes (no update after the last)
    floor_run = sum((n - 1) * med[p][1] + med[p][0] for p in ("generator", "vae", "rewards"))

    saved = {}
    original = diff._save_copy
    for label, parts in (("off", frozenset()), ("all", frozenset(reno.CHECKPOINT_PARTS))):
        total, first = [0], []

        def counting(tensor, total=total):
            out = original(tensor)
            if tensor.grad_fn is not None:
                total[0] += out.numel() * out.element_size()
            return out

        diff._save_copy = counting
        try:
            # what the first iteration's forward (generator, VAE, rewards) leaves for its backward
            reno_run(parts, iterations=2, on_iteration=lambda k, n, _, first=first, total=total: first.append(total[0]))
        finally:
            diff._save_copy = original
        saved[label] = first[0]

    params = sum(p.numel() for p in model.model.diffusion_model.parameters())
    lines = [
        f"Device: {mm.get_torch_device()}, torch threads {args.threads}, process CPU time, median of {args.repeats} "
        f"interleaved runs. Toy world: UNet {params / 1e6:.2f} M params, latent {models.LATENT}x{models.LATENT}, "
        f"batch {args.batch}, {args.steps} step(s), toy CLIP reward; ReNO runs of {args.iterations} iterations.", "",
        "| part | forward (ms) | forward + backward (ms) | GFLOP forward + backward | GFLOP/s |",
        "|---|---|---|---|---|",
        *[f"| {name} | {1e3 * med[part][0]:.1f} | {1e3 * med[part][1]:.1f} | {flops[part] / 1e9:.3f} | "
          f"{flops[part] / 1e9 / med[part][1]:.1f} |"
          for part, name in (("generator", f"generator ({args.steps} guided model call(s))"), ("vae", "VAE decode"),
                             ("rewards", "rewards"))], "",
        f"| per run of {n} iterations ({n} forward, {n - 1} backward passes) | ms |", "|---|---|",
        f"| floor: the parts above, {n - 1} x forward + backward + 1 x forward | {1e3 * floor_run:.0f} |",
        f"| ReNO run (samplers/reno.py, the node's code) | {1e3 * med['reno']:.0f} |",
        f"| **ReNO / floor** | **{med['reno'] / floor_run:.3f}** |",
        f"| FLOPs per iteration (forward + backward, all parts) | {sum(flops.values()) / 1e9:.3f} GFLOP |", "",
        "| checkpointing | activations kept for backward per iteration (MiB) |", "|---|---|",
        f"| off | {saved['off'] / 2 ** 20:.2f} |",
        f"| all (generator, VAE, rewards) | {saved['all'] / 2 ** 20:.2f} |",
    ]
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        command = "~/.cache/quickstep/venv/bin/python benchmarks/reno_bench.py" + "".join(
            f" --{k} {getattr(args, k)}" for k in ("iterations", "repeats", "batch", "steps", "threads"))
        Path(args.out).write_text(f"# ReNO cost against the floor\n\nCommand: `{command}`\n\n" + table)


if __name__ == "__main__":
    main()
