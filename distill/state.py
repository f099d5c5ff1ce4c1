"""A LADD run as data: save it, resume it bit for bit, and refuse to resume it on another base model.

One safetensors file holds every tensor (LoRA, EMA, heads, both AdamW states, the trainer's RNG state); its metadata
holds the JSON rest (config, step, loss history, optimiser param groups, the base model's identity). A file is written
to a temporary name next to the target and moved over it with `os.replace` (atomic on POSIX and Windows), so an
interrupted save leaves the previous file whole. Nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .step import Config, Trainer

FORMAT = "quickstep-ladd-state/1"


@dataclass
class State:
    """Everything a run needs to continue, detached from any live module (LADD_STATE in the graph)."""

    model: object  # the base MODEL (not saved; its identity is)
    config: Config
    identity: dict
    lora: dict[str, torch.Tensor]
    heads: dict[str, torch.Tensor] | None = None
    opt_g: dict | None = None
    opt_d: dict | None = None
    ema: dict[str, torch.Tensor] | None = None
    step: int = 0
    rng: torch.Tensor | None = None
    history: list[dict] = field(default_factory=list)

    def __repr__(self) -> str:
        return (f"LADD state: step {self.step}, rank {self.config.rank}, {len(self.lora) // 2} LoRA layers, "
                f"grid {self.config.grid_steps} steps, base {self.identity.get('class')}")

    def trainer(self) -> Trainer:
        return Trainer(self.model, self.config, self.lora, self.heads, self.opt_g, self.opt_d, self.ema, self.step,
                       self.rng)

    @classmethod
    def of(cls, trainer: Trainer, identity: dict, history: list[dict]) -> State:
        with torch.inference_mode(False):  # normal tensors, even when a node (inference mode) asks
            return cls._of(trainer, identity, history)

    @classmethod
    def _of(cls, trainer: Trainer, identity: dict, history: list[dict]) -> State:
        cpu = lambda d: {k: v.detach().cpu().clone() for k, v in d.items()}  # noqa: E731
        return cls(model=trainer.base_model, config=trainer.config, identity=identity,
                   lora=cpu(trainer.lora), heads=cpu(trainer.disc.state_dict()),
                   opt_g=_cpu_opt(trainer.opt_g.state_dict()), opt_d=_cpu_opt(trainer.opt_d.state_dict()),
                   ema=cpu(trainer.ema) if trainer.ema is not None else None, step=trainer.step,
                   rng=trainer.generator.get_state().clone(), history=list(history))

    def student_lora(self) -> dict[str, torch.Tensor]:
        """The LoRA to ship: the EMA when the run keeps one."""
        return self.ema if self.ema is not None else self.lora


def _cpu_opt(sd: dict) -> dict:
    state = {i: {k: (v.detach().cpu().clone() if isinstance(v, torch.Tensor) else v) for k, v in s.items()}
             for i, s in sd["state"].items()}
    return {"state": state, "param_groups": json.loads(json.dumps(sd["param_groups"]))}


def base_identity(model) -> dict:
    """A fingerprint of the base weights: class, every key and shape, and exact bytes of a strided sample of each
    tensor (cheap on any size, device independent), plus the names of weight patches already on the MODEL."""
    dm = model.model.diffusion_model
    h_shapes, h_values = hashlib.sha256(), hashlib.sha256()
    count = 0
    for name, p in sorted(dm.state_dict().items()):
        h_shapes.update(f"{name}:{tuple(p.shape)}:{p.dtype};".encode())
        flat = p.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 64)][:64].to("cpu", torch.float32).contiguous()
        h_values.update(sample.numpy().tobytes())
        count += p.numel()
    patches = sorted(getattr(model, "patches", {}).keys())
    return {"class": type(dm).__name__, "parameters": count, "shapes": h_shapes.hexdigest()[:16],
            "values": h_values.hexdigest()[:16], "patches": hashlib.sha256(json.dumps(patches).encode()).hexdigest()[:16]}


def check_identity(saved: dict, model) -> None:
    now = base_identity(model)
    if saved != now:
        diffs = [k for k in now if saved.get(k) != now[k]]
        raise ValueError(f"state: this training state was made on another base model (different {', '.join(diffs)}: "
                         f"saved {saved.get('class')} with {saved.get('parameters')} parameters, connected "
                         f"{now['class']} with {now['parameters']}). Connect the MODEL it was trained from (with the "
                         "same LoRAs and patches), or start a new run with QuickstepLADDInit.")


# ---------------------------------------------------------------------- files

def atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors `save_file` to a temporary sibling, flushed to disk, then renamed over `path`."""
    import safetensors.torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        safetensors.torch.save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # as a plain write would leave it (the temporary file may be private)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save(state: State, path: Path) -> None:
    tensors: dict[str, torch.Tensor] = {}
    tensors.update({f"lora/{k}": v for k, v in state.lora.items()})
    if state.ema is not None:
        tensors.update({f"ema/{k}": v for k, v in state.ema.items()})
    if state.heads is not None:
        tensors.update({f"heads/{k}": v for k, v in state.heads.items()})
    opts = {}
    for name in ("opt_g", "opt_d"):
        sd = getattr(state, name)
        if sd is None:
            continue
        scalars = {}
        for i, s in sd["state"].items():
            for k, v in s.items():
                if isinstance(v, torch.Tensor):
                    tensors[f"{name}/{i}/{k}"] = v
                else:
                    scalars[f"{i}/{k}"] = v
        opts[name] = {"param_groups": sd["param_groups"], "scalars": scalars}
    if state.rng is not None:
        tensors["rng"] = state.rng
    meta = {"format": FORMAT, "config": state.config.to_dict(), "identity": state.identity, "step": state.step,
            "history": state.history, "optimizers": opts}
    atomic_save(tensors, path, {"quickstep_ladd": json.dumps(meta)})


def load(path: Path, model) -> State:
    """The state saved at `path`, resumed on `model` (which must be the base it was trained on)."""
    import safetensors

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"state: no training state at {path}.")
    with safetensors.safe_open(str(path), framework="pt") as f:
        raw = (f.metadata() or {}).get("quickstep_ladd")
        if raw is None:
            raise ValueError(f"state: {path.name} is not a Quickstep LADD state (no quickstep_ladd metadata); "
                             "pick a *_state.safetensors file written by QuickstepLADDSave or QuickstepLADDTrain.")
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta = json.loads(raw)
    if meta.get("format") != FORMAT:
        raise ValueError(f"state: {path.name} has format {meta.get('format')!r}; this version reads {FORMAT}.")
    check_identity(meta["identity"], model)

    def group(prefix):
        return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + "/")}

    opts = {}
    for name, o in meta["optimizers"].items():
        state: dict[int, dict] = {}
        for k, v in group(name).items():
            i, key = k.split("/", 1)
            state.setdefault(int(i), {})[key] = v
        for k, v in o["scalars"].items():
            i, key = k.split("/", 1)
            state.setdefault(int(i), {})[key] = v
        opts[name] = {"state": state, "param_groups": o["param_groups"]}
    return State(model=model, config=Config.from_dict(meta["config"]), identity=meta["identity"],
                 lora=group("lora"), heads=group("heads") or None, opt_g=opts.get("opt_g"), opt_d=opts.get("opt_d"),
                 ema=group("ema") or None, step=int(meta["step"]), rng=tensors.get("rng"),
                 history=list(meta.get("history", [])))
