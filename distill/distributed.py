"""Data-parallel LADD: the one training step of `step.py` on N processes with PyTorch DDP (NCCL on GPUs, gloo on CPUs).

N processes with global batch B train as one process with batch B does, to float rounding:
- every process holds the same generator (seeded by the run, saved in its state) and draws each random number for the
  whole global batch: dataset items (`Dataset.sample_indices`), grid indices, noise, re-noise levels. Each keeps its
  own contiguous rows (`Trainer.shard`; rank r of N takes rows r*B/N .. (r+1)*B/N - 1), so a sample gets the same
  numbers for any N, and the generator, hence the saved state, is the same on every process;
- every loss is a mean over samples and DDP averages gradients over processes: with equal shards the mean of the
  shards' means is the global batch's mean, so clipping and AdamW see the one-process gradient everywhere;
- logged metrics are averaged over processes the same way (`mean_metrics`).
DDP goes around the trainable parts only: the LoRA (the parameters of the student call, `_StudentCall`) and the
discriminator heads (the D step's call). The frozen base weights are not wrapped; each process loads its own copy.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass

import torch


class SetupError(ValueError):
    """A problem found before the process group starts work (config, dataset, model, world size)."""


@dataclass(frozen=True)
class World:
    """This process's place among the processes torchrun started (one process: rank 0 of 1)."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @classmethod
    def from_env(cls) -> World:
        def num(name, default):
            value = os.environ.get(name, "")
            return int(value) if value.strip().isdigit() else default

        return cls(rank=num("RANK", 0), local_rank=num("LOCAL_RANK", 0), size=max(1, num("WORLD_SIZE", 1)))

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, batch: int) -> tuple[int, int, int]:
        """(start, stop, batch): this process's rows of the global batch."""
        per = batch // self.size
        return self.rank * per, (self.rank + 1) * per, batch


def check_batch(batch: int, world_size: int) -> None:
    if batch % world_size:
        fits = [n for n in range(1, batch + 1) if batch % n == 0]
        raise SetupError(
            f"batch_size: the global batch of {batch} does not divide among {world_size} processes (torchrun's "
            f"--nproc_per_node times --nnodes); every process must train the same number of samples. Use a "
            f"batch_size that is a multiple of {world_size} (e.g. {world_size * max(1, round(batch / world_size))}), "
            f"or run a number of processes that divides {batch} ({', '.join(map(str, fits))}).")


def backend(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def init(world: World, device: torch.device) -> None:
    """Join the process group torchrun set up (MASTER_ADDR/PORT in the environment); nothing for one process."""
    if world.size > 1:
        import inspect

        import torch.distributed as dist

        # NCCL: bind the group to this process's GPU (torch >= 2.3 takes device_id; older ones find it themselves)
        takes = "device_id" in inspect.signature(dist.init_process_group).parameters
        kwargs = {"device_id": device} if device.type == "cuda" and takes else {}
        dist.init_process_group(backend(device), rank=world.rank, world_size=world.size, **kwargs)


def finish(world: World) -> None:
    if world.size > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


class _StudentCall(torch.nn.Module):
    """The student's forward as a module whose parameters are the trainer's LoRA tensors (the same objects), so that
    DDP averages the LoRA gradients of the G step's backward."""

    def __init__(self, trainer):
        super().__init__()
        self.lora = torch.nn.ParameterList(trainer.lora.values())
        self._student = trainer._student

    def forward(self, denoise, x, sigma):
        out = self._student(denoise, x, sigma)
        # every LoRA tensor takes part in the output, with weight 0 (the values and the other gradients are
        # unchanged), so that DDP needs no walk over the autograd graph for layers a family leaves out of a step
        return out + 0.0 * sum(p.view(-1)[:1].sum() for p in self.lora)


def data_parallel(trainer, world: World, batch: int, pooled: bool):
    """Make `trainer` train this process's shard of a global batch of `batch`, its gradients averaged by DDP
    (`pooled`: the dataset has pooled text embeddings, so the heads' pooled projection takes part in every step)."""
    trainer.shard = world.shard(batch) if world.size > 1 else None
    if world.size > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        trainer.student_call = DDP(_StudentCall(trainer))
        trainer.heads_call = DDP(trainer.disc, find_unused_parameters=trainer.disc.pooled is not None and not pooled)
    return trainer


def mean_metrics(metrics: dict, world: World, device: torch.device) -> dict:
    """The step's float metrics averaged over processes (each is a mean over its equal shard)."""
    if world.size == 1:
        return metrics
    import torch.distributed as dist

    keys = sorted(k for k, v in metrics.items() if isinstance(v, float))
    values = torch.tensor([metrics[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(values)
    out = dict(metrics)
    out.update({k: float(v) / world.size for k, v in zip(keys, values.tolist(), strict=True)})
    return out


class Stop:
    """SIGINT (Ctrl-C) and SIGTERM (torchrun's agent, a cluster's preemption) ask for a stop after the current step;
    `agreed` makes every process stop after the same step, so that rank 0's save is the state of all."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum = 0
        self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

    def _handle(self, signum, frame) -> None:
        if not self.signum:
            self.signum = signum
            # torchrun forwards Ctrl-C as SIGTERM to each worker, which also got the terminal's SIGINT: both mean one
            # stop request; SIGKILL (or the agent's own deadline) is the way to stop without saving.
            sys.stderr.write(f"\n[quickstep] {signal.Signals(signum).name}: stopping after this step and saving\n")

    def agreed(self, world: World, device: torch.device) -> int:
        """The signal any process received (0: none), the same on all of them."""
        if world.size == 1:
            return self.signum
        import torch.distributed as dist

        flag = torch.tensor([self.signum], dtype=torch.int64, device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item())

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
