"""Plumbing shared by the `toyworld.train_*` scripts (run from the repository root as modules)."""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

LOGS = Path(__file__).resolve().parent / "logs"


def setup(name: str, argv=None, run=None, **defaults) -> tuple[argparse.Namespace, "Curve"]:
    """Parse `--key value` overrides of `defaults`, seed everything, bring in the pinned ComfyUI host.

    `--run NAME` names the loss curve (default `run(args)` when given, else `name`), so a second phase logs apart from
    the first."""
    parser = argparse.ArgumentParser(prog=f"python -m toyworld.{name}")
    for key, value in dict(defaults, run="").items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--out", type=str, default="", help="weights directory (default: toyworld/weights)")
    args = parser.parse_args(argv)
    args.run = args.run or (run(args) if run else name)
    torch.set_num_threads(args.threads) if hasattr(args, "threads") else None
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    root = Path(__file__).resolve().parent.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from host.inprocess import import_host
    from host.locate import find_host

    import_host(find_host("current"))
    return args, Curve(args.run, vars(args))


class Curve:
    """Loss curve: one JSON line per logged step in toyworld/logs/<name>.jsonl, plus a line on stdout."""

    def __init__(self, name: str, config: dict):
        LOGS.mkdir(exist_ok=True)
        self.path = LOGS / f"{name}.jsonl"
        self.file = open(self.path, "w")
        self.start = time.time()
        self.log(event="config", **config)

    def log(self, **fields) -> None:
        fields["t"] = round(time.time() - self.start, 1)
        line = json.dumps(fields)
        self.file.write(line + "\n")
        self.file.flush()
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def cosine_lr(step: int, total: int, peak: float, warmup: int = 100, time_fraction: float = 0.0) -> float:
    """Linear warm-up, then cosine decay over whichever runs out first: the steps or the time budget."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = max((step - warmup) / max(1, total - warmup), time_fraction)
    return peak * 0.5 * (1 + np.cos(np.pi * min(1.0, progress)))


class Budget:
    """Wall-clock budget of a training run: `fraction` used so far, `over` once spent."""

    def __init__(self, minutes: float):
        self.start, self.seconds = time.time(), minutes * 60

    @property
    def fraction(self) -> float:
        return (time.time() - self.start) / self.seconds

    @property
    def over(self) -> bool:
        return self.fraction >= 1.0


def init_(module: torch.nn.Module) -> None:
    """torch's default-style init (Comfy's ops skip reset_parameters())."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim >= 2:
                bound = p[0].numel() ** -0.5
                torch.nn.init.uniform_(p, -bound, bound)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.fill_(1.0)


def save_weights(state_dict: dict, name: str, out: str = "", dtype=torch.float32) -> None:
    """Write `state_dict` as safetensors `name` in `out` (default toyworld/weights, whose SHA256SUMS is updated).

    Atomic (temporary file, then rename): a run stopped mid-save, or a reader, never sees half a file."""
    import safetensors.torch

    from toyworld import models

    path = (Path(out) if out else models.WEIGHTS) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().contiguous().to(dtype) for k, v in state_dict.items()}
    tmp = path.with_suffix(".tmp")
    safetensors.torch.save_file(sd, str(tmp), metadata={"format": "pt", "toyworld": Path(name).stem})
    tmp.replace(path)
    if not out:
        models.record_hash(name)
