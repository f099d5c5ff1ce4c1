"""Resumable training state for the v2 toy scripts: weights, AdamW moments, torch generator and a JSON meta, in ONE
safetensors file replaced atomically (a run killed mid-save keeps the previous state whole; weights and meta never
come from different steps)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch


def _gens(gen) -> dict[str, torch.Generator]:
    return gen if isinstance(gen, dict) else {"gen": gen}


def save_state(path: str | Path, modules: dict[str, torch.nn.Module], opt: torch.optim.Optimizer,
               gen: torch.Generator | dict[str, torch.Generator], meta: dict) -> None:
    """`gen`: the run's random generator, or {name: generator} (e.g. one on the CPU and one on the GPU)."""
    import safetensors.torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, module in modules.items():
        tensors.update({f"{name}.{k}": v.detach().float().contiguous().cpu() for k, v in module.state_dict().items()})
    params = [p for group in opt.param_groups for p in group["params"]]
    for i, p in enumerate(params):
        for key, value in opt.state.get(p, {}).items():
            tensors[f"opt.{i}.{key}"] = torch.as_tensor(value).detach().float().reshape(-1).contiguous().cpu()
    for name, g in _gens(gen).items():
        tensors[name] = g.get_state()
    groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    tmp = path.with_name(path.name + ".tmp")
    safetensors.torch.save_file(tensors, str(tmp), metadata={"meta": json.dumps(meta), "groups": json.dumps(groups)})
    os.replace(tmp, path)


def load_state(path: str | Path, modules: dict[str, torch.nn.Module], opt: torch.optim.Optimizer,
               gen: torch.Generator | dict[str, torch.Generator]) -> dict | None:
    """Restore what `save_state` wrote into `modules`, `opt` and `gen` and return its meta; None when `path` is absent."""
    import safetensors
    import safetensors.torch

    path = Path(path)
    if not path.is_file():
        return None
    with safetensors.safe_open(str(path), framework="pt") as f:
        info = f.metadata()
    tensors = safetensors.torch.load_file(str(path))
    for name, module in modules.items():
        own = module.state_dict()
        module.load_state_dict({k: tensors[f"{name}.{k}"].to(v.dtype) for k, v in own.items()}, strict=True)
    params = [p for group in opt.param_groups for p in group["params"]]
    for i, p in enumerate(params):
        state = {key.split(".", 2)[2]: v for key, v in tensors.items() if key.startswith(f"opt.{i}.")}
        if state:
            state = {k: v.reshape(()) if k == "step" else v.reshape(p.shape).to(p.device) for k, v in state.items()}
            opt.state[p] = state
    for group, saved in zip(opt.param_groups, json.loads(info["groups"]), strict=True):
        group.update(saved)
    for name, g in _gens(gen).items():
        g.set_state(tensors[name])
    return json.loads(info["meta"])
