"""LADD beyond one process: throughput of the training command (distill/train.py) on 1 and N processes, and of the
node path (QuickstepLADDTrain calling distill.step.train_step), side by side in one run.

    ~/.cache/quickstep/venv/bin/python benchmarks/ladd_ddp_bench.py                   # CPU, gloo: 1 and 2 processes
    ~/.cache/quickstep/venv/bin/python benchmarks/ladd_ddp_bench.py --device cuda --processes 1   # a GPU: command vs node
    ... --device cuda --processes 1,2,4,8                                             # a node with several GPUs

Writes benchmarks/results/ladd_ddp.md (CPU) or ladd_ddp_cuda.md. Every method runs in fresh processes on the toy
teacher (toyworld: the 1.7M-parameter SD1-style UNet, 16x16x4 latents) with the same teacher dataset, global batch
--batch, LoRA rank 16, gradient checkpointing on, --threads torch threads per process. Throughput is samples per second
over steps 2..--steps, timed inside the training process (start-up and the first step, its warm-up, excluded). The
methods alternate for --repeats rounds; the table gives the median. Scaling efficiency = throughput(N) / (N x
throughput(1 process)). Command vs node: the command on one process against the node path on the same device.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "distill" / "train.py"
PROMPTS = ["a red circle", "a blue square", "two green triangles", "a yellow circle", "a green square",
           "a red triangle left of a blue circle", "three yellow squares", "a blue triangle"]
RANK, SEED = 16, 0
RATE = re.compile(r"steps 2-\d+: ([0-9.]+) samples/s, ([0-9.]+) ms of CPU time per sample")


def _host_inprocess(device: str):
    sys.path.insert(0, str(ROOT / "tests"))
    import harness

    harness.register_pack()
    from host.inprocess import import_host

    import_host(harness.host_path("current"), cpu=device == "cpu")


def worker_data(folder: str, device: str) -> None:
    """The teacher dataset: 8 prompts x 4 seeds, 25 euler steps at CFG 4 (as toyworld/train_student.py)."""
    _host_inprocess(device)
    import torch

    from quickstep.distill import dataset as ds
    from quickstep.toyworld import models

    with torch.no_grad():
        ds.generate(models.load_unet(), models.load_clip(), PROMPTS, 0, 4, Path(folder), 128, 128, 25, 4.0, "euler",
                    "normal", batch=4)


def worker_node(folder: str, device: str, steps: int, batch: int, threads: int) -> None:
    """The node path: LADD Init, then LADD Train (its loop calls train_step; progress bar, previews)."""
    _host_inprocess(device)
    import torch

    torch.set_num_threads(threads)
    from quickstep.distill import dataset as ds
    from quickstep.nodes import ladd as ladd_nodes
    from quickstep.toyworld import models

    teacher, data = models.load_unet(), ds.load(Path(folder))
    with torch.inference_mode():
        state = ladd_nodes.LADDInit.execute(teacher, RANK, SEED).result[0]
        state = ladd_nodes.LADDTrain.execute(state, data, 1, batch, 0).result[0]  # the first step: warm-up
        if device == "cuda":
            torch.cuda.synchronize()
        start, cpu = time.perf_counter(), time.process_time()
        ladd_nodes.LADDTrain.execute(state, data, steps - 1, batch, 0)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    samples = (steps - 1) * batch
    sys.stdout.write(json.dumps({"rate": samples / seconds, "cpu_ms": cpu * 1000 / samples}) + "\n")


def command_rate(python: str, folder: Path, work: Path, processes: int, args, batch: int = 0) -> tuple[float, float]:
    """(samples/s, ms of CPU time per sample of rank 0's shard) of the command on `processes` processes."""
    sys.path.insert(0, str(ROOT / "tests"))
    import harness

    harness.register_pack()
    from quickstep.distill import step as sp
    from quickstep.distill import train

    run = work / f"cmd{processes}_{time.time_ns()}"
    config = train.write_config(run / "run.json", base={"loader": "toy", "name": "teacher"}, dataset=folder,
                                output=run / "out", loras=run / "loras", save_prefix="bench", steps=args.steps,
                                batch_size=batch or args.batch, save_every=0,
                                training=sp.Config(rank=RANK, seed=SEED).to_dict())
    cmd = [python, str(SCRIPT)] if processes == 1 else \
        [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", str(SCRIPT)]
    proc = subprocess.run([*cmd, str(config), "--device", args.device, "--threads", str(args.threads)],
                          capture_output=True, text=True, env=_env(args))
    found = RATE.search(proc.stdout)
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"command on {processes} process(es) failed ({proc.returncode}):\n{proc.stdout[-2000:]}"
                           f"\n{proc.stderr[-3000:]}")
    return float(found.group(1)), float(found.group(2))


def node_rate(python: str, folder: Path, args) -> tuple[float, float]:
    proc = subprocess.run([python, __file__, "--worker", "node", "--data", str(folder), "--device", args.device,
                           "--steps", str(args.steps), "--batch", str(args.batch), "--threads", str(args.threads)],
                          capture_output=True, text=True, env=_env(args))
    if proc.returncode != 0:
        raise RuntimeError(f"node path failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out["rate"], out["cpu_ms"]


def _env(args) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    import harness

    return dict(os.environ, COMFYUI_PATH=str(harness.host_path("current")), OMP_NUM_THREADS=str(args.threads))


def _load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--processes", default="1,2", help="comma-separated process counts for the command")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=8, help="global batch")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--data", default="", help="dataset folder (made when empty; default: a temporary one)")
    parser.add_argument("--worker", choices=["data", "node"], help=argparse.SUPPRESS)
    parser.add_argument("--out", default="", help="results file (default benchmarks/results/ladd_ddp[_cuda].md)")
    args = parser.parse_args(argv)
    if args.worker == "data":
        worker_data(args.data, args.device)
        return 0
    if args.worker == "node":
        worker_node(args.data, args.device, args.steps, args.batch, args.threads)
        return 0

    counts = [int(n) for n in args.processes.split(",")]
    if any(args.batch % n for n in counts):
        parser.error(f"--batch {args.batch} must be a multiple of every process count {counts}")
    python = sys.executable
    work = Path(tempfile.mkdtemp(prefix="ladd_ddp_bench_"))
    folder = Path(args.data) if args.data else work / "data"
    load_before, started = _load(), time.time()
    if not any(folder.glob("*.safetensors")):
        subprocess.run([python, __file__, "--worker", "data", "--data", str(folder), "--device", args.device],
                       check=True, env=_env(args))
    # one process at the per-process batch of the most processes: separates the smaller batch from the all-reduce
    small = args.batch // max(counts)
    methods = [(f"command x{n}", lambda n=n: command_rate(python, folder, work, n, args)) for n in counts]
    if max(counts) > 1:
        methods.append(("command x1 small", lambda: command_rate(python, folder, work, 1, args, small)))
    methods.append(("node", lambda: node_rate(python, folder, args)))
    rates: dict[str, list[float]] = {k: [] for k, _ in methods}
    cpu: dict[str, list[float]] = {k: [] for k in rates}
    for r in range(args.repeats):
        for key, measure in methods:
            rate, ms = measure()
            rates[key].append(rate)
            cpu[key].append(ms)
            print(f"round {r + 1}: {key}: {rate:.2f} samples/s, {ms:.0f} ms CPU per sample", flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
    one = med["command x1"] if 1 in counts else None

    shown = " ".join(sys.argv[1:])
    lines = [f"# LADD data-parallel throughput ({args.device})", "",
             f"Command: `~/.cache/quickstep/venv/bin/python benchmarks/ladd_ddp_bench.py{(' ' + shown) if shown else ''}`",
             "",
             f"Toy teacher (1.7M-parameter SD1-style UNet, 16x16x4 latents), {len(list(folder.glob('*.safetensors')))} "
             f"teacher samples, global batch {args.batch}, LoRA rank {RANK}, gradient checkpointing on, "
             f"{args.threads} torch thread(s) per process, steps 2..{args.steps} timed inside the training process, "
             f"median of {args.repeats} alternating rounds.", ""]
    if args.device == "cpu":
        lines += [f"Machine: {os.cpu_count()} CPU cores **shared with other engineers' jobs** (load average "
                  f"{load_before} before, {_load()} after; 1/5/15 min). Two processes need two free cores to scale; "
                  "here they compete with each other and with the other jobs, so the measured efficiency is a lower "
                  "bound that says little about GPUs, where each process has its own device. The CPU time per "
                  "sample (of each process's own shard, rank 0) does not depend on free cores: 1-process CPU time / "
                  "N-process CPU time is the efficiency N processes would reach with a free core each (it also "
                  "counts the smaller per-process batch and the gloo all-reduce).", ""]
    lines += ["| method | processes | per-process batch | samples/s (median) | rounds | vs 1 process | scaling "
              "efficiency | CPU ms / sample | efficiency with a free core each |",
              "|---|---|---|---|---|---|---|---|---|"]
    for n in counts:
        key = f"command x{n}"
        m = med[key]
        vs = f"{m / one:.2f}x" if one else ""
        eff = (f"**{m / (n * one):.0%}**" if n > 1 else "(reference)") if one else ""
        ideal = (f"{cpu_med['command x1'] / cpu_med[key]:.0%}" if n > 1 else "(reference)") if one else ""
        lines.append(f"| command (`distill/train.py`{', torchrun' if n > 1 else ''}) | {n} | {args.batch // n} | "
                     f"{m:.2f} | {', '.join(f'{x:.2f}' for x in rates[key])} | {vs} | {eff} | {cpu_med[key]:.0f} | "
                     f"{ideal} |")
    if "command x1 small" in med:
        lines.append(f"| command, global batch {small} | 1 | {small} | {med['command x1 small']:.2f} | "
                     f"{', '.join(f'{x:.2f}' for x in rates['command x1 small'])} | | | "
                     f"{cpu_med['command x1 small']:.0f} | |")
    lines.append(f"| node path (LADD Train) | 1 | {args.batch} | {med['node']:.2f} | "
                 f"{', '.join(f'{x:.2f}' for x in rates['node'])} | | | {cpu_med['node']:.0f} | |")
    if one:
        paired = statistics.median(a / b for a, b in zip(rates["command x1"], rates["node"], strict=True))
        lines += ["", f"Command on 1 process / node path: **{paired:.2f}x** throughput (median of the per-round "
                      f"ratios; ratio of the medians {one / med['node']:.2f}x) and {cpu_med['node'] / cpu_med['command x1']:.2f}x "
                      "in CPU time per sample (>= 1: the command is not slower; both run the same train_step)."]
    if "command x1 small" in med:
        n = max(counts)
        lines += ["", f"Where the {n}-process CPU time goes: one process at the per-process batch {small} costs "
                      f"{cpu_med['command x1 small']:.0f} ms per sample against {cpu_med['command x1']:.0f} at batch "
                      f"{args.batch}, so the smaller batch accounts for "
                      f"{cpu_med['command x1 small'] - cpu_med['command x1']:.0f} ms and DDP (gloo all-reduce, the "
                      f"shared draws) for {cpu_med[f'command x{n}'] - cpu_med['command x1 small']:.0f} ms of the "
                      f"{cpu_med[f'command x{n}'] - cpu_med['command x1']:.0f} ms difference."]
    lines += ["", f"Wall time of the benchmark: {time.time() - started:.0f} s."]
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / \
        ("ladd_ddp.md" if args.device == "cpu" else f"ladd_ddp_{args.device}.md")
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
