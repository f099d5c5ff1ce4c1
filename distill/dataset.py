"""The synthetic dataset LADD trains on (Sauer et al. 2024, Sec. 3.2: "synthetic data" from the teacher with CFG).

`generate` samples the teacher through core sampling (`comfy.sample.sample`, what KSampler runs) with classifier-free
guidance, one file per (prompt, seed): `<index>.safetensors` with the latent (VAE space, as LATENT["samples"]), the
conditioning tensor and the pooled text embedding, and the prompt, seed and sampler settings as metadata. Each file
is written atomically (state.atomic_save), so a run interrupted at any point resumes by skipping the files already
there: nothing is duplicated or lost. `load` reads such a folder into memory; text encoders and the VAE are not needed
after that.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .state import atomic_save

SUFFIX = ".safetensors"
_EXTRA_KEYS = ("guidance",)  # scalar conditioning options kept with the item (Flux guidance)


def item_path(folder: Path, index: int) -> Path:
    return Path(folder) / f"{index:06d}{SUFFIX}"


def plan(prompts: list[str], seed: int, per_prompt: int) -> list[tuple[int, str, int]]:
    """(index, prompt, seed) of every item: prompt-major, seeds seed .. seed + per_prompt - 1."""
    return [(i * per_prompt + j, p, seed + j) for i, p in enumerate(prompts) for j in range(per_prompt)]


def _done(path: Path, prompt: str, seed: int) -> bool:
    import safetensors

    if not path.is_file():
        return False
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("quickstep_ladd_item", "{}"))
    except Exception:  # a foreign or damaged file: regenerate it
        return False
    return meta.get("prompt") == prompt and meta.get("seed") == seed


def generate(model, clip, prompts: list[str], seed: int, per_prompt: int, folder: Path, width: int, height: int,
             steps: int, cfg: float, sampler_name: str, scheduler: str, negative: str = "", batch: int = 1,
             on_item: Callable[[int, int, torch.Tensor | None], None] | None = None,
             check_interrupt: Callable[[], None] | None = None) -> int:
    """Write every missing item of `plan(prompts, seed, per_prompt)` into `folder`; returns how many were written.

    `on_item(done, total, latent_or_None)` reports progress; `check_interrupt()` may raise to stop between items.
    Items of one prompt are sampled `batch` at a time, each with its own seed's noise (prepare_noise).
    """
    import comfy.sample

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    items = plan(prompts, seed, per_prompt)
    total, written, done = len(items), 0, 0
    neg = clip.encode_from_tokens_scheduled(clip.tokenize(negative))
    for prompt in dict.fromkeys(prompts):
        todo = [(i, s) for i, p, s in items if p == prompt and not _done(item_path(folder, i), p, s)]
        done += sum(1 for _, p, _ in items if p == prompt) - len(todo)
        if not todo:
            continue
        pos = clip.encode_from_tokens_scheduled(clip.tokenize(prompt))
        channels = model.get_model_object("latent_format").latent_channels
        ratio = 8  # EmptyLatentImage's spatial ratio; the latent is what core's empty-latent nodes would give
        zeros = torch.zeros(1, channels, height // ratio, width // ratio)
        for start in range(0, len(todo), batch):
            chunk = todo[start:start + batch]
            if check_interrupt is not None:
                check_interrupt()
            noise = torch.cat([comfy.sample.prepare_noise(zeros, s) for _, s in chunk])
            latent = zeros.expand(len(chunk), -1, -1, -1).contiguous()
            out = comfy.sample.sample(model, noise, steps, cfg, sampler_name, scheduler, pos, neg, latent,
                                      seed=chunk[0][1], disable_pbar=True, callback=_every_step(check_interrupt))
            cond, extras = pos[0][0][0], pos[0][1]
            for k, (index, item_seed) in enumerate(chunk):
                tensors = {"latent": out[k].float().cpu().contiguous(), "cond": cond.float().cpu().contiguous()}
                if isinstance(extras.get("pooled_output"), torch.Tensor):
                    tensors["pooled"] = extras["pooled_output"][0].float().cpu().contiguous()
                meta = {"prompt": prompt, "seed": item_seed, "steps": steps, "cfg": cfg, "sampler": sampler_name,
                        "scheduler": scheduler, "negative": negative}
                meta.update({k2: float(extras[k2]) for k2 in _EXTRA_KEYS if k2 in extras})
                atomic_save(tensors, item_path(folder, index), {"quickstep_ladd_item": json.dumps(meta)})
                written += 1
                done += 1
            if on_item is not None:
                on_item(done, total, out[:1])
    return written


def _every_step(check_interrupt):
    """A sampling callback that lets Cancel stop the teacher within one sampling step."""
    if check_interrupt is None:
        return None
    return lambda step, x0, x, total: check_interrupt()


@dataclass
class Dataset:
    latents: torch.Tensor  # [N, C, H, W], VAE space
    cond: torch.Tensor  # [N, T, D]
    pooled: torch.Tensor | None  # [N, P]
    prompts: list[str]
    extras: dict
    folder: str

    def __len__(self) -> int:
        return self.latents.shape[0]

    def __repr__(self) -> str:
        return f"LADD dataset: {len(self)} latents {tuple(self.latents.shape[1:])} from {self.folder}"

    def batch(self, indices: torch.Tensor) -> dict:
        extras = dict(self.extras)
        if self.pooled is not None:
            extras["pooled_output"] = self.pooled[indices]
        return {"latent": self.latents[indices], "positive": [[self.cond[indices], extras]],
                "pooled": self.pooled[indices] if self.pooled is not None else None,
                "prompts": [self.prompts[int(i)] for i in indices]}  # what a reward scores against

    def sample_indices(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """The items of one training batch, drawn with replacement from the run's generator (the training command
        draws the whole global batch on every process and each takes its rows)."""
        return torch.randint(len(self), (batch_size,), generator=generator)

    def sample_batch(self, batch_size: int, generator: torch.Generator) -> dict:
        return self.batch(self.sample_indices(batch_size, generator))


def load(folder: Path) -> Dataset:
    """Every item in `folder` (sorted by name), checked for one shape of latent and conditioning."""
    import safetensors

    folder = Path(folder)
    files = sorted(p for p in folder.glob(f"*{SUFFIX}") if p.name[:-len(SUFFIX)].isdigit()) if folder.is_dir() else []
    if not files:
        raise ValueError(f"dataset: no items in {folder} (expected NNNNNN.safetensors files written by "
                         "QuickstepLADDDataset). Run the dataset node first, or point it at a folder that has them.")
    latents, conds, pooled, prompts, extras = [], [], [], [], {}
    for p in files:
        with safetensors.safe_open(str(p), framework="pt") as f:
            keys = set(f.keys())
            if not {"latent", "cond"} <= keys:
                raise ValueError(f"dataset: {p.name} lacks 'latent' and 'cond' tensors; it is not a LADD item.")
            meta = json.loads((f.metadata() or {}).get("quickstep_ladd_item", "{}"))
            latents.append(f.get_tensor("latent"))
            conds.append(f.get_tensor("cond"))
            pooled.append(f.get_tensor("pooled") if "pooled" in keys else None)
        prompts.append(meta.get("prompt", ""))
        extras.update({k: meta[k] for k in _EXTRA_KEYS if k in meta})
        for what, items in (("latent", latents), ("conditioning", conds)):
            if items[-1].shape != items[0].shape:
                raise ValueError(f"dataset: {p.name} has {what} shape {tuple(items[-1].shape)} but {files[0].name} "
                                 f"has {tuple(items[0].shape)}; one folder must hold one latent size and one text "
                                 "encoder's conditioning. Put other sizes in another folder.")
    has_pooled = all(x is not None for x in pooled)
    return Dataset(torch.stack(latents), torch.stack(conds), torch.stack(pooled) if has_pooled else None, prompts,
                   extras, str(folder))


def check_against(dataset: Dataset, model, expected_pooled: int) -> None:
    """Raise before training when the dataset cannot condition `model`."""
    from .step import context_dim

    channels = model.get_model_object("latent_format").latent_channels
    if dataset.latents.shape[1] != channels:
        raise ValueError(f"dataset: latents have {dataset.latents.shape[1]} channels but this model takes {channels}; "
                         f"the dataset in {dataset.folder} was made with another model family. Make a dataset with "
                         "this model (QuickstepLADDDataset).")
    ctx = context_dim(model)
    if ctx and dataset.cond.shape[-1] != ctx:
        raise ValueError(f"dataset: conditioning is {dataset.cond.shape[-1]} wide but this model's cross-attention "
                         f"takes {ctx}; encode the prompts with this model's text encoder (QuickstepLADDDataset).")
    if expected_pooled and (dataset.pooled is None or dataset.pooled.shape[-1] != expected_pooled):
        got = "none" if dataset.pooled is None else dataset.pooled.shape[-1]
        raise ValueError(f"dataset: pooled text embeddings are {got} wide but this model's family uses "
                         f"{expected_pooled}; make the dataset with this model's text encoder.")
